"""A conftest backend that answers the bundled suite the way instruction-tuned models answer.

It reads the suite's own ground truth (the case files and golden manifests under the rootdir) and answers as
real models do, not as the built-in model was trained to: capitalised with a full stop, in **bold**, quoted,
after a <think> block, in a sentence when the question carries no format instruction, grounding in the
family's own convention (Qwen3-VL: a fenced JSON list of labelled boxes with a distractor first; InternVL:
<ref>/<box> tags; LLaVA: fractions; ...), captions as two sentences. Model names:

- ``realistic-FAMILY`` answers right; ``wrong-FAMILY`` answers in the same styles with wrong content.
- FAMILY is a key of :data:`FAMILIES` (the backend names the family in ``info``, as a conftest backend may).

The test copies this file into a pytester project's conftest.py, so it imports nothing from the tests package.
"""

from __future__ import annotations

import json
import random
import zlib
from collections import Counter
from pathlib import Path

import yaml

from pytest_vleval.backends.families import adapter_by_name
from pytest_vleval.cases.casefile import Case, load_case_file

FAMILIES = {
    "qwen3": "Qwen3-VL",
    "qwen2": "Qwen2-VL",
    "internvl": "InternVL",
    "llava": "LLaVA-1.5",
    "cogvlm": "CogVLM",
    "minigpt": "MiniGPT-v2",
    "qwenvl": "Qwen-VL",
    "generic": "generic",
}
COLOURS = ("red", "green", "blue", "yellow", "orange", "purple", "红色", "绿色", "蓝色", "黄色", "橙色", "紫色")
SHAPES = ("circle", "square", "triangle", "diamond", "圆形", "正方形", "三角形", "菱形")
OPPOSITE = {"left": "right", "right": "left", "top": "bottom", "bottom": "top",
            "左边": "右边", "右边": "左边", "上边": "下边", "下边": "上边"}  # fmt: skip
INSTRUCTIONS = ("single word", "single number", "Locate", "bounding box", "bbox", "[refer]", "<ref>", "caption",
                "单个词")  # fmt: skip
ZH_NUMBERS = {"1": "一", "2": "两", "3": "三", "4": "四", "5": "五", "6": "六", "7": "七", "8": "八", "9": "九"}


def _other(truth: str, pool: tuple[str, ...], avoid: set[str]) -> str:
    """Another word of `pool` in the same language as `truth`."""
    return next(x for x in pool if x != truth and x not in avoid and x.isascii() == truth.isascii())


class RealisticBackend:
    def __init__(self, spec, root: Path, family: str, wrong: bool) -> None:
        self.spec = spec
        self.wrong = wrong
        self.family = FAMILIES[family]
        adapter = adapter_by_name(self.family)
        self.info = {"device": "cpu", "architecture": "Realistic", "family": self.family,
                     "box_convention": adapter.box_convention if adapter else "normalized"}  # fmt: skip
        self.cases: dict[tuple[Path, ...], Case] = {}
        for path in sorted(root.rglob("test_*.yaml")):
            for case in load_case_file(path).cases:
                self.cases[case.images] = case
        self.golden: dict[Path, list[str]] = {}
        self.chinese: set[Path] = set()
        for manifest in sorted(root.rglob("golden.yaml")):
            data = yaml.safe_load(manifest.read_text(encoding="utf-8"))
            coco = json.loads((manifest.parent / data["references"]).read_text())
            refs: dict[int, list[str]] = {}
            for ann in coco["annotations"]:
                refs.setdefault(ann["image_id"], []).append(ann["caption"])
            files = [
                (manifest.parent / data.get("images_dir", "images") / i["file_name"], i["id"]) for i in coco["images"]
            ]
            for n, (path, image_id) in enumerate(files):
                source = files[(n + 1) % len(files)][1] if wrong else image_id
                self.golden[path.resolve()] = refs[source]
                if data.get("tokenize", "ptb") != "ptb":
                    self.chinese.add(path.resolve())

    def generate(self, conversations):
        return [self.answer(c) for c in conversations]

    def answer(self, conv) -> str:
        images = tuple(Path(p).resolve() for p in conv.images)
        if images[0] in self.chinese:
            return f"图中是{self.golden[images[0]][0]}。这是一幅纯灰色背景上的简单图形。"
        if images[0] in self.golden:
            return f"The image shows {self.golden[images[0]][0]}. It is a simple drawing on a plain background."
        case = self.cases[images]
        turn = case.turns[len(conv.history)]
        rng = random.Random(zlib.crc32(f"{case.id}/{len(conv.history)}".encode()))
        instructed = any(word in conv.question for word in INSTRUCTIONS)
        if turn.refer:
            return self._box(case, turn, rng)
        if "caption" in case.tags:
            return self._caption(turn, chinese="zh" in case.tags)
        truth = self._truth(case, turn)
        if "zh" in case.tags:
            return self._short_zh(truth, rng, counted="count" in case.tags)
        if "dialogue" in case.tags or not instructed:
            return rng.choice((f"It is {truth}.", f"The answer is {truth}.", f"I can see that it is {truth}."))
        return self._short(truth, rng)

    def _truth(self, case: Case, turn) -> str:
        answers = [str(r) for r in turn.reference]
        truth = Counter(answers).most_common(1)[0][0]
        if not self.wrong:
            return truth
        avoid = set(answers)
        if "ocr" in case.tags:
            return "xyzzy"
        if truth.isdigit():
            return str(int(truth) + 3)
        if truth in ("yes", "no"):
            return "no" if truth == "yes" else "yes"
        if truth in COLOURS:
            return _other(truth, COLOURS, avoid)
        if truth in SHAPES:
            return _other(truth, SHAPES, avoid)
        if truth in OPPOSITE:
            return OPPOSITE[truth]
        return "xyzzy"

    @staticmethod
    def _short(truth: str, rng: random.Random) -> str:
        words = {"1": "One", "2": "Two", "3": "Three", "4": "Four", "5": "Five"}
        styles = [f"{truth.capitalize()}.", f"**{truth.capitalize()}**", f'"{truth}"', f"Answer: {truth}",
                  f"<think>\nLet me look at the image carefully.\n</think>\n\n{truth.capitalize()}."]  # fmt: skip
        if truth in words:
            styles.append(f"{words[truth]}.")
        return rng.choice(styles)

    @staticmethod
    def _short_zh(truth: str, rng: random.Random, counted: bool) -> str:
        """Chinese models' short answers: a full stop 。, bold, corner quotes, an 答案： label, reasoning first;
        counts with a measure word, in Chinese numerals or digits (三个, 3个)."""
        if counted and truth.isdigit():
            return rng.choice(
                (f"{ZH_NUMBERS[truth]}个。", f"{truth}个", f"**{ZH_NUMBERS[truth]}个**", f"答案：{truth}")
            )
        styles = [f"{truth}。", f"**{truth}**", f"「{truth}」", f"答案：{truth}",
                  f"<think>\n我仔细看一下这张图片。\n</think>\n\n{truth}。"]  # fmt: skip
        return rng.choice(styles)

    def _caption(self, turn, chinese: bool = False) -> str:
        words = [str(w) for w in turn.reference]
        if self.wrong:
            words = [_other(w, COLOURS, set(words)) if w in COLOURS else w for w in words]
        if chinese:
            pairs = [f"一个{words[i]}的{words[i + 1]}" for i in range(0, len(words), 2)]
            return f"图中有{'和'.join(pairs)}，背景是纯灰色的。这些形状都很简单。"
        pairs = [f"a {words[i]} {words[i + 1]}" for i in range(0, len(words), 2)]
        return f"The image shows {' and '.join(pairs)} on a plain grey background. The shapes are flat and simple."

    def _box(self, case: Case, turn, rng: random.Random) -> str:
        from PIL import Image

        with Image.open(case.images[0]) as image:
            width, height = image.size
        x1, y1, x2, y2 = (float(v) for v in turn.reference)
        if self.wrong:  # a small box in the corner farthest from the object
            cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
            x1, x2 = (0.0, width * 0.1) if cx > width / 2 else (width * 0.9, float(width))
            y1, y2 = (0.0, height * 0.1) if cy > height / 2 else (height * 0.9, float(height))
        ref = turn.question

        def grid(scale: float) -> list[int]:
            return [round(x1 / width * scale), round(y1 / height * scale),
                    round(x2 / width * scale), round(y2 / height * scale)]  # fmt: skip

        if self.family == "Qwen3-VL":  # a fenced JSON list; another object first, as models list all they see
            decoy = {"bbox_2d": [0, 0, 50, 50], "label": "grey background"}
            boxes = [decoy, {"bbox_2d": grid(1000), "label": ref}]
            return "```json\n" + json.dumps(boxes, indent="\t") + "\n```"
        if self.family == "Qwen2-VL":
            a = grid(1000)
            return f"<|object_ref_start|>{ref}<|object_ref_end|><|box_start|>({a[0]},{a[1]}),({a[2]},{a[3]})<|box_end|>"
        if self.family == "InternVL":
            return f"<ref>{ref}</ref><box>[[{', '.join(map(str, grid(1000)))}]]</box>"
        if self.family == "CogVLM":
            return f"The {ref} is at [[{','.join(f'{v:03d}' for v in grid(1000))}]]."
        if self.family == "MiniGPT-v2":
            return f"<p>{ref}</p> {{{''.join(f'<{v}>' for v in grid(100))}}}"
        if self.family == "Qwen-VL":
            a = grid(999)
            return f"<ref>{ref}</ref><box>({a[0]},{a[1]}),({a[2]},{a[3]})</box>"
        fractions = [round(v / 1000, 2) for v in grid(1000)]
        if self.family == "generic":
            return json.dumps({"bbox_2d": fractions})
        return str(fractions)  # LLaVA: "[0.21, 0.92, 0.36, 1.0]"

    def close(self) -> None:
        pass


def pytest_vleval_load_model(config, spec, options):
    kind, _, family = spec.requested.partition("-")
    if kind in ("realistic", "wrong") and family in FAMILIES:
        return RealisticBackend(spec, Path(config.rootpath), family, wrong=kind == "wrong")
    return None
