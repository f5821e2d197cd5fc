"""Fine-tune the built-in `tiny` into the built-in judge `tiny-judge`, on the CPU.

    python -m pytest_vleval.builtin.train_judge --base src/pytest_vleval/builtin/tiny \
        --out src/pytest_vleval/builtin/tiny-judge --steps 1200

It learns the plugin's judge format (``judge-v1``, every section order) on the ``correctness`` and ``description``
rubrics over the scenes' questions (``judge_data.py``); the time it took and its held-out agreement with the true
verdicts are in ``training.json`` and the README. It is a judge for the built-in suites' kinds of answers — enough
to exercise the judge path end to end offline — not a general one.
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_vleval.builtin.judge_data import judge_example
from pytest_vleval.builtin.scenes import HELD_OUT_SEED_BASE, Example
from pytest_vleval.builtin.train import _optimizer, _save, _Stepper, run_steps
from pytest_vleval.builtin.train_data import answer_labels, messages_for, training_text

__all__ = ["evaluate_judge", "train_judge"]


def _inputs(processor: Any, texts: list[str], examples: Sequence[Example]) -> dict[str, Any]:
    images = [im for e in examples for im in e.images]
    return dict(processor(text=texts, images=images or None, return_tensors="pt", padding=True))


class JudgeBatches:
    """An endless, seeded stream of judge examples as length-sorted micro-batches with answer-only labels."""

    def __init__(self, processor: Any, batch_size: int, seed: int, micro: int) -> None:
        self.processor, self.batch_size, self.micro = processor, batch_size, micro
        self.next_seed = seed * 10**9

    def __next__(self) -> list[tuple[dict[str, Any], list[str]]]:
        examples = [judge_example(self.next_seed + i) for i in range(self.batch_size)]
        self.next_seed += self.batch_size
        examples.sort(key=lambda e: len(training_text(e)) + 40 * len(e.scenes))
        self.processor.tokenizer.padding_side = "right"
        per = math.ceil(len(examples) / self.micro)
        out = []
        for start in range(0, len(examples), per):
            chunk = examples[start : start + per]
            inputs = _inputs(self.processor, [training_text(e) for e in chunk], chunk)
            inputs["labels"] = answer_labels(inputs["input_ids"], self.processor.tokenizer)
            inputs["aux"] = None
            out.append((inputs, [e.meta["rubric"] for e in chunk]))
        return out


def evaluate_judge(model: Any, processor: Any, n: int = 200, batch_size: int = 16) -> dict[str, float]:
    """Held-out share of verdicts that parse and give the true score, per rubric (greedy, as the plugin asks)."""
    import torch

    from pytest_vleval.scoring.verdicts import VerdictError, parse_verdict

    model.eval()
    processor.tokenizer.padding_side = "left"
    examples = [judge_example(HELD_OUT_SEED_BASE + 10**6 + i) for i in range(n)]
    right: dict[str, list[float]] = {}
    for start in range(0, n, batch_size):
        chunk = examples[start : start + batch_size]
        messages = [messages_for(len(e.scenes), [], e.turns[0][0]) for e in chunk]
        prompts = [processor.apply_chat_template(m, add_generation_prompt=True, tokenize=False) for m in messages]
        inputs = _inputs(processor, prompts, chunk)
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=64, do_sample=False)
        texts = processor.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        for e, text in zip(chunk, texts, strict=True):
            try:
                ok = parse_verdict(text, 1, 5).score == e.meta["score"]
            except VerdictError:
                ok = False
            right.setdefault(e.meta["rubric"], []).append(float(ok))
    return {rubric: round(sum(v) / len(v), 3) for rubric, v in sorted(right.items())}


def train_judge(
    base: Path, out: Path, *, steps: int, seed: int = 0, batch_size: int = 16, lr: float = 1e-3, warmup: int = 50,
    micro: int = 2, threads: int = 2, eval_n: int = 200, log_every: int = 50,
) -> dict[str, Any]:  # fmt: skip
    import torch
    from transformers import AutoProcessor, Qwen3VLForConditionalGeneration

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    random.seed(seed)
    model = Qwen3VLForConditionalGeneration.from_pretrained(str(base), dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(str(base))
    optimizer = _optimizer(model, lr, 0.01)
    stepper = _Stepper(model, optimizer, None, 0.0, False)
    batches = JudgeBatches(processor, batch_size, seed, micro)
    log: dict[str, Any] = {
        "command": "python -m pytest_vleval.builtin.train_judge " + " ".join(sys.argv[1:]),
        "base": base.name, "seed": seed, "steps": steps, "batch_size": batch_size, "lr": lr,
        "template": "judge-v1", "torch_threads": threads,
    }  # fmt: skip
    log["train_seconds"] = run_steps(model, stepper, batches, steps, lr, warmup, log_every)
    if eval_n:
        log["heldout_verdict_accuracy"] = evaluate_judge(model, processor, eval_n)
        print(f"held-out verdict accuracy: {log['heldout_verdict_accuracy']}", flush=True)
    _save(model, processor, out, log)
    print(f"saved {out} after {log['train_seconds']:.0f}s of training", flush=True)
    return log


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", type=Path, required=True, help="The checkpoint to start from (the built-in tiny).")
    parser.add_argument("--out", type=Path, required=True, help="Directory for the judge checkpoint.")
    parser.add_argument("--steps", type=int, default=1200, help="Optimizer steps (default: 1200).")
    parser.add_argument("--seed", type=int, default=0, help="Seed for the data order (default: 0).")
    parser.add_argument("--batch-size", type=int, default=16, help="Examples per step (default: 16).")
    parser.add_argument("--lr", type=float, default=1e-3, help="Peak learning rate (default: 1e-3).")
    parser.add_argument("--eval", type=int, default=200, help="Held-out verdicts to check (default: 200).")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2).")
    args = parser.parse_args(argv)
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    train_judge(args.base, args.out, steps=args.steps, seed=args.seed, batch_size=args.batch_size, lr=args.lr,
                eval_n=args.eval, threads=args.threads)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
