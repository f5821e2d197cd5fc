"""Collecting a large dataset `source:` block: time and peak memory of `pytest --collect-only` (whole processes).

Linux only (reads VmHWM from /proc). Writes a VQAv2-shaped layout of N questions (official file layout, 10 answers
each; the image files are not written: a source's images are checked when their case runs, never at collection)
and collects it twice, full and with `sample: 500`, interleaved over --repeat rounds. Prints wall seconds, peak
RSS, the per-case cost, and the memory per kept case.

    .venv/bin/python benchmarks/bench_source_collection.py --rows 200000 --repeat 2
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_layout(root: Path, rows: int) -> None:
    data = root / "data"
    data.mkdir(parents=True)
    questions = [
        {"image_id": i // 3, "question": f"What is shown in picture {i}?", "question_id": i} for i in range(rows)
    ]
    answers = ["yes", "no", "2", "red", "dog"]
    annotations = [
        {
            "question_id": i,
            "image_id": i // 3,
            "answers": [
                {"answer": answers[(i + k) % 5], "answer_confidence": "yes", "answer_id": k + 1} for k in range(10)
            ],
        }
        for i in range(rows)
    ]
    (data / "questions.json").write_text(json.dumps({"data_subtype": "val2014", "questions": questions}))
    (data / "annotations.json").write_text(json.dumps({"annotations": annotations}))
    (data / "val2014").mkdir()
    block = "source:\n  format: vqav2\n  questions: data/questions.json\n  annotations: data/annotations.json\n"
    block += "  images: data/val2014/\n"
    (root / "full").mkdir()
    (root / "full" / "test_full.yaml").write_text(block.replace("data/", "../data/"))
    (root / "sampled").mkdir()
    (root / "sampled" / "test_sampled.yaml").write_text(block.replace("data/", "../data/") + "  sample: 500\n")


def collect(folder: Path) -> tuple[float, float, int]:
    """(wall seconds, peak RSS MiB, items collected) of one `pytest --collect-only` process."""
    # VmHWM, not ru_maxrss: ru_maxrss survives exec, so a child forked from this (large) process would report
    # this process's peak.
    code = (
        "import re, sys, pytest\n"
        "rc = pytest.main(['--collect-only', '-q', '-p', 'no:cacheprovider', '--vl-model=tiny', sys.argv[1]])\n"
        "status = open('/proc/self/status').read()\n"
        "print('PEAK', re.search(r'VmHWM:\\s+(\\d+)', status).group(1))\n"
        "raise SystemExit(rc)\n"
    )
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", code, str(folder)], capture_output=True, text=True, cwd=folder)
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"collection failed in {folder}:\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    peak = next(int(line.split()[1]) for line in proc.stdout.splitlines() if line.startswith("PEAK")) / 1024
    items = sum(1 for line in proc.stdout.splitlines() if "::" in line)
    return wall, peak, items


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=200_000)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_layout(root, args.rows)
        size = sum(p.stat().st_size for p in (root / "data").glob("*.json")) / 2**20
        print(f"{args.rows} rows, {size:.0f} MiB of JSON")
        best: dict[str, tuple[float, float, int]] = {}
        for _ in range(args.repeat):
            for name in ("full", "sampled"):
                result = collect(root / name)
                if name not in best or result[0] < best[name][0]:
                    best[name] = result
        for name, (wall, peak, items) in best.items():
            print(
                f"{name:8s} {items:7d} cases  {wall:6.1f} s  peak RSS {peak:7.0f} MiB  {wall / items * 1e3:.3f} ms/case"
            )
        full, sampled = best["full"], best["sampled"]
        extra = (full[1] - sampled[1]) * 2**20 / max(1, full[2] - sampled[2])
        print(f"memory per kept case (full - sampled) / (rows - 500): {extra / 1024:.1f} KiB")


if __name__ == "__main__":
    main()
