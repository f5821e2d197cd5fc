"""Time the COCO caption metrics on N synthetic captions (5 references each), three ways, in one run:

1. ``lmms-eval``: pycocoevalcap called the way lmms-eval's COCO task does it (``coco_aggregation_result``): one
   aggregation per metric (Bleu_1..4, METEOR, ROUGE_L, CIDEr), each building pycocotools COCO objects,
   constructing every scorer (so a METEOR JVM is started each time), running PTBTokenizer on references and
   candidates, and computing its one metric.
2. ``pycocoevalcap once``: the plain official way (``COCOEvalCap.evaluate`` without SPICE): tokenise references
   and candidates once, run each scorer once.
3. ``pytest-vleval``: ``pytest_vleval.metrics.evaluate_captions`` (one PTBTokenizer run for both, each scorer
   once, METEOR with an English locale, temp files outside site-packages).

SPICE is left out of all three (it needs the CoreNLP 3.6.0 jars and lmms-eval disables it too). Needs Java.

    .venv/bin/python benchmarks/bench_caption_metrics.py [--n 5000] [--seed 0] [--repeat 1]

On a busy machine the Java start-ups dominate and vary: use --repeat 2 or more and compare ratios.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import random
import sys
import time
from collections.abc import Callable
from typing import Any

from pytest_vleval.metrics import METRICS, evaluate_captions, java_status

SCORED = tuple(metric for metric in METRICS if metric != "SPICE")

SUBJECTS = [
    ("man", "men"),
    ("woman", "women"),
    ("child", "children"),
    ("dog", "dogs"),
    ("cat", "cats"),
    ("horse", "horses"),
    ("giraffe", "giraffes"),
    ("bird", "birds"),
    ("person", "people"),
    ("skier", "skiers"),
    ("surfer", "surfers"),
    ("bus", "buses"),
    ("train", "trains"),
    ("plate of food", "plates of food"),
]
ADJECTIVES = ["", "", "young", "small", "large", "white", "black", "brown", "red", "old", "little"]
ACTIONS = [
    "standing",
    "sitting",
    "walking",
    "riding a bike",
    "playing frisbee",
    "eating",
    "looking at the camera",
    "parked",
    "laying down",
    "running",
    "holding an umbrella",
]
PLACES = [
    "on a beach",
    "in a grassy field",
    "next to a building",
    "on a city street",
    "in the snow",
    "on a wooden table",
    "near the water",
    "in a kitchen",
    "under a tree",
    "at the park",
    "on top of a hill",
    "in front of a fence",
]
NUMBERS = {2: "two", 3: "three", 4: "four"}


def sentence(rng: random.Random, subject: int, place: int) -> str:
    """A COCO-like caption about a given subject and place, with varied wording."""
    singular, plural = SUBJECTS[subject]
    adjective = rng.choice(ADJECTIVES)
    action = rng.choice(ACTIONS)
    where = PLACES[place] if rng.random() < 0.8 else rng.choice(PLACES)
    count = rng.choice([1, 1, 1, 2, 3, 4])
    noun = singular if count == 1 else plural
    noun = f"{adjective} {noun}".strip()
    if count == 1:
        article = "An" if noun[0] in "aeiou" else "A"
        text = f"{article} {noun} {'is ' if rng.random() < 0.3 else ''}{action} {where}"
    else:
        text = f"{NUMBERS[count].capitalize()} {noun} {'are ' if rng.random() < 0.3 else ''}{action} {where}"
    return text + ("." if rng.random() < 0.7 else "")


def make_corpus(n: int, seed: int) -> tuple[dict[int, list[str]], dict[int, str]]:
    rng = random.Random(seed)
    references: dict[int, list[str]] = {}
    candidates: dict[int, str] = {}
    for image_id in range(1, n + 1):
        subject, place = rng.randrange(len(SUBJECTS)), rng.randrange(len(PLACES))
        references[image_id] = [sentence(rng, subject, place) for _ in range(5)]
        # A "model": usually about the right subject and place, sometimes wrong.
        if rng.random() < 0.2:
            subject = rng.randrange(len(SUBJECTS))
        candidates[image_id] = sentence(rng, subject, place).lower()
    return references, candidates


def lmms_eval_way(references: dict[int, list[str]], candidates: dict[int, str]) -> dict[str, float]:
    """lmms_eval/tasks/coco_cap/utils.py: coco_aggregation_result, called once per metric."""
    from pycocoevalcap.eval import Bleu, Cider, COCOEvalCap, Meteor, Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer
    from pycocotools.coco import COCO

    def aggregation(metric: str) -> float:
        scorers = [
            (Bleu(4), "Bleu_1"),
            (Bleu(4), "Bleu_2"),
            (Bleu(4), "Bleu_3"),
            (Bleu(4), "Bleu_4"),
            (Meteor(), "METEOR"),
            (Rouge(), "ROUGE_L"),
            (Cider(), "CIDEr"),
        ]
        scorers_dict = {s[1]: s for s in scorers}
        stored_results = [{"image_id": image_id, "caption": caption} for image_id, caption in candidates.items()]
        dataset: dict[str, list[dict[str, Any]]] = {"annotations": [], "images": []}
        idx = 0
        for image_id, refs in references.items():
            for caption in refs:
                dataset["annotations"].append({"image_id": image_id, "caption": caption, "id": idx})
                idx += 1
            dataset["images"].append({"id": image_id})
        coco = COCO()
        coco.dataset = dataset
        coco.createIndex()
        coco_result = coco.loadRes(stored_results)
        coco_eval = COCOEvalCap(coco, coco_result)
        gts = {i: coco_eval.coco.imgToAnns[i] for i in coco_eval.params["image_id"]}
        res = {i: coco_eval.cocoRes.imgToAnns[i] for i in coco_eval.params["image_id"]}
        tokenizer = PTBTokenizer()
        gts = tokenizer.tokenize(gts)
        res = tokenizer.tokenize(res)
        score, _ = scorers_dict[metric][0].compute_score(gts, res)
        if isinstance(score, list):
            score = score[int(metric.split("_")[-1]) - 1]
        return float(score)

    return {metric: aggregation(metric) for metric in SCORED}


def pycocoevalcap_once(references: dict[int, list[str]], candidates: dict[int, str]) -> dict[str, float]:
    """COCOEvalCap.evaluate, minus SPICE: tokenise once, each scorer once."""
    from pycocoevalcap.eval import Bleu, Cider, Meteor, Rouge
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    gts = {i: [{"caption": c} for c in refs] for i, refs in sorted(references.items())}
    res = {i: [{"caption": candidates[i]}] for i in sorted(references)}
    tokenizer = PTBTokenizer()
    gts_tok = tokenizer.tokenize(gts)
    res_tok = tokenizer.tokenize(res)
    scores: dict[str, float] = {}
    bleu, _ = Bleu(4).compute_score(gts_tok, res_tok)
    scores.update({f"Bleu_{n}": float(bleu[n - 1]) for n in range(1, 5)})
    meteor = Meteor()
    scores["METEOR"] = float(meteor.compute_score(gts_tok, res_tok)[0])
    del meteor
    scores["ROUGE_L"] = float(Rouge().compute_score(gts_tok, res_tok)[0])
    scores["CIDEr"] = float(Cider().compute_score(gts_tok, res_tok)[0])
    return scores


def ours(references: dict[int, list[str]], candidates: dict[int, str]) -> dict[str, float]:
    result = evaluate_captions(references, candidates, metrics=SCORED)
    assert not result.skipped, result.message
    return result.corpus


def timed(function: Callable[..., dict[str, float]], *args: Any) -> tuple[float, dict[str, float]]:
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools and BLEU print progress
        scores = function(*args)
    return time.perf_counter() - start, scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=5000, help="Number of captions (default: 5000)")
    parser.add_argument("--seed", type=int, default=0, help="Random seed of the synthetic corpus (default: 0)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="Runs of each method, interleaved; the fastest counts (default: 1)"
    )
    args = parser.parse_args(argv)
    java = java_status()
    if not java.usable:
        print(f"needs Java: {java.reason}", file=sys.stderr)
        return 2
    references, candidates = make_corpus(args.n, args.seed)
    print(f"{args.n} captions x 5 references, Java {java.version}, metrics: {', '.join(SCORED)}")
    runs = [
        ("lmms-eval (per-metric aggregation)", lmms_eval_way),
        ("pycocoevalcap, tokenise once", pycocoevalcap_once),
        ("pytest-vleval evaluate_captions", ours),
    ]
    best: dict[str, tuple[float, dict[str, float]]] = {}
    for _ in range(args.repeat):
        for name, function in runs:
            seconds, scores = timed(function, references, candidates)
            if name not in best or seconds < best[name][0]:
                best[name] = (seconds, scores)
    results = [(name, *best[name]) for name, _ in runs]
    baseline = results[-1][1]
    print(f"\n{'method':<38}{'seconds':>10}{'x ours':>9}")
    for name, seconds, _ in results:
        print(f"{name:<38}{seconds:>10.2f}{seconds / baseline:>9.2f}")
    reference = results[-1][2]
    print(f"\n{'metric':<10}" + "".join(f"{name.split()[0]:>16}" for name, _, _ in results))
    for metric in SCORED:
        print(f"{metric:<10}" + "".join(f"{scores[metric]:>16.10f}" for _, _, scores in results))
    worst = max(abs(scores[m] - reference[m]) for _, _, scores in results for m in SCORED)
    print(f"\nlargest difference from pytest-vleval's scores: {worst:.3g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
