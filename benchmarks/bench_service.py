"""Throughput through a team's own HTTP service: ``pytest --vl-model=http://... --vl-concurrency=N`` vs 1.

Starts the seed-shaped Flask service (``tests/services/flask_service.py``: multipart image + prompt, the built-in
model behind a lock, one generation at a time, as a plain Flask app in front of a model is) on 127.0.0.1, then
runs the bundled suite (its single-image files, ``--copies`` times over) through the plugin at each concurrency,
each run a whole pytest process with the answer cache off, alternating concurrencies over ``--rounds`` rounds so
that drift on a shared machine hits all alike. Prints wall time, cases/s, and each ratio to concurrency 1; checks
that every run gave the same answers. Loopback only; the service is stopped at the end, also on failure.

    .venv/bin/python benchmarks/bench_service.py                          # concurrency 1 vs 4, 3 rounds
    .venv/bin/python benchmarks/bench_service.py --concurrency 1 2 4 8 --copies 4
    .venv/bin/python benchmarks/bench_service.py --echo-delay 0.05   # a service that answers concurrently
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = ("test_colour.yaml", "test_count.yaml", "test_shape.yaml", "test_position.yaml", "test_ocr.yaml",
         "test_chart.yaml", "test_grounding.yaml", "test_captions.yaml")  # fmt: skip
DESCRIPTION = """body: multipart
image: image
question: prompt
max_tokens: max_new_tokens
answer: result
family: Qwen3-VL
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def service(log: Path, model: list[str]) -> object:
    port = free_port()
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "services" / "flask_service.py"), "--port", str(port), *model],
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"the service did not start:\n{log.read_text()[-2000:]}")
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/version", timeout=1).read()
                break
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/v1/vision/completion"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=20)


def suite(folder: Path, copies: int) -> int:
    shutil.copytree(REPO / "test_cases" / "images", folder / "images")
    for n in range(copies):
        for name in FILES:
            shutil.copy(REPO / "test_cases" / name, folder / f"{Path(name).stem}_{n}.yaml")
    (folder / "service.yaml").write_text(DESCRIPTION)
    return len(list(folder.glob("test_*.yaml")))


def run(folder: Path, url: str, concurrency: int, n: int) -> tuple[float, dict]:
    record = folder / f"run-{concurrency}-{n}.json"
    command = [
        sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"--vl-model={url}",
        "--vl-endpoint=service.yaml", f"--vl-concurrency={concurrency}", "--vl-no-cache", f"--vl-json={record}",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, timeout=1800)
    seconds = time.perf_counter() - started
    if done.returncode not in (0, 1):
        raise SystemExit(f"pytest failed ({done.returncode}):\n{done.stdout[-3000:]}")
    cases = json.loads(record.read_text())["cases"]
    return seconds, {(c["suite"], c["case_id"]): [t.get("answer") for t in c["turns"]] for c in cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--copies", type=int, default=2, help="copies of the bundled single-image files")
    parser.add_argument(
        "--echo-delay", type=float, default=None, metavar="SECONDS",
        help="instead of the built-in model, a service whose answers take SECONDS each and run concurrently "
        "(as behind a batching engine or a remote GPU)",
    )  # fmt: skip
    args = parser.parse_args()
    model = ["--model", "tiny"] if args.echo_delay is None else ["--model", "echo", "--delay", str(args.echo_delay)]
    with tempfile.TemporaryDirectory(prefix="vleval-bench-service-") as tmp:
        folder = Path(tmp)
        suite(folder, args.copies)
        times: dict[int, list[float]] = {c: [] for c in args.concurrency}
        answers: list[dict] = []
        with service(folder / "service.log", model) as url:
            for n in range(args.rounds):
                for concurrency in args.concurrency:
                    seconds, got = run(folder, url, concurrency, n)
                    times[concurrency].append(seconds)
                    answers.append(got)
                    print(f"round {n + 1}: concurrency {concurrency}: {seconds:.2f} s", flush=True)
    cases = len(answers[0])
    same = all(a == answers[0] for a in answers)
    print(f"\n{cases} cases per run; answers identical across all runs: {same}")
    base = statistics.median(times[args.concurrency[0]])
    print("| --vl-concurrency | median wall s | cases/s | speed-up vs first |\n|---:|---:|---:|---:|")
    for concurrency, samples in times.items():
        median = statistics.median(samples)
        print(f"| {concurrency} | {median:.2f} | {cases / median:.1f} | {base / median:.2f}x |")
    if not same:
        raise SystemExit("answers differed between runs")


if __name__ == "__main__":
    main()
