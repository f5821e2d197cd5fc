"""Throughput of the HTTP backend against a local `transformers serve`: --vl-concurrency=N vs 1.

Starts `transformers serve` on 127.0.0.1 with a model directory (default: a random-weight Qwen3-VL built
offline), sends the same conversations at each concurrency (alternating, several rounds, so drift on a shared
machine hits both alike) and prints cases/s and the ratio. Loopback only.

    .venv/bin/python benchmarks/bench_http.py                      # 16 cases, concurrency 1 vs 4, 3 rounds
    .venv/bin/python benchmarks/bench_http.py --model-dir DIR --cases 32 --concurrency 1 2 4 8
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def random_model(out: Path) -> Path:
    """A random Qwen3-VL whose greedy answers vary with the input (as tests/conftest.py builds it)."""
    import torch
    from transformers import AutoModelForImageTextToText

    from pytest_vleval.builtin.build import build_random_qwen3vl

    base = build_random_qwen3vl(out.with_name(out.name + "-base"), seed=0)
    model = AutoModelForImageTextToText.from_pretrained(base)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() > 1:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.15)
    model.save_pretrained(out)
    for file in base.iterdir():
        if not (out / file.name).exists():
            shutil.copy(file, out / file.name)
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(model_dir: Path, port: int, workdir: Path) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("transformers")
    cache = workdir / "empty-hub-cache"
    cache.mkdir(exist_ok=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_CACHE": str(cache)}
    args = [str(exe), "serve", model_dir.name, "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    log = (workdir / "serve.log").open("wb")
    process = subprocess.Popen(args, cwd=model_dir.parent, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"transformers serve exited:\n{(workdir / 'serve.log').read_text()[-2000:]}")
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            connection.request("GET", "/health")
            if connection.getresponse().status == 200:
                return process
        except OSError:
            pass
        finally:
            connection.close()
        time.sleep(0.25)
    process.kill()
    sys.exit("transformers serve was not ready within 180 s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, help="model directory to serve (default: a random Qwen3-VL)")
    parser.add_argument("--cases", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from PIL import Image

    from pytest_vleval.backends.openai import OpenAIBackend
    from pytest_vleval.models import Conversation, GenerationFailure, resolve_model
    from pytest_vleval.options import VlOptions

    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmp:
        workdir = Path(tmp)
        model_dir = args.model_dir.resolve() if args.model_dir else random_model(workdir / "rand-qwen3vl")
        images = []
        for n in range(args.cases):
            path = workdir / f"img{n}.png"
            Image.new("RGB", (64 + 8 * (n % 4), 64), ((40 * n) % 256, 90, 200 - (10 * n) % 200)).save(path)
            images.append(path)
        conversations = [
            Conversation(images=(images[n],), question=f"Describe picture {n}.", max_new_tokens=args.max_new_tokens)
            for n in range(args.cases)
        ]
        port = free_port()
        server = start_server(model_dir, port, workdir)
        try:
            spec = resolve_model(f"openai://127.0.0.1:{port}/v1/{model_dir.name}")

            def backend(concurrency: int) -> OpenAIBackend:
                options = VlOptions(
                    models=(spec.requested,),
                    device="auto",
                    dtype="auto",
                    max_new_tokens=args.max_new_tokens,
                    trust_remote_code=False,
                    batch_size=None,
                    case_files=(),
                    golden_files=(),
                    concurrency=concurrency,
                )
                return OpenAIBackend(spec, options)

            backend(1).generate(conversations[:2])  # warm-up: first requests pay one-off costs
            seconds: dict[int, list[float]] = {c: [] for c in args.concurrency}
            answers: dict[int, list] = {}
            for _ in range(args.rounds):
                for concurrency in args.concurrency:
                    client = backend(concurrency)
                    started = time.perf_counter()
                    answers[concurrency] = client.generate(conversations)
                    seconds[concurrency].append(time.perf_counter() - started)
            failures = [a for c in answers.values() for a in c if isinstance(a, GenerationFailure)]
            if failures:
                sys.exit(f"{len(failures)} requests failed, e.g. {failures[0].message}")
            first = args.concurrency[0]
            same = all(answers[c] == answers[first] for c in args.concurrency)
            print(
                f"{args.cases} cases, max_new_tokens={args.max_new_tokens}, {args.rounds} rounds, "
                f"{os.cpu_count()} CPUs; answers identical across concurrencies: {same}"
            )
            base = statistics.median(seconds[first])
            for concurrency in args.concurrency:
                median = statistics.median(seconds[concurrency])
                print(
                    f"  concurrency {concurrency:>2}: median {median:6.2f} s  {args.cases / median:6.2f} cases/s  "
                    f"x{base / median:.2f} vs {first}   (rounds: {', '.join(f'{s:.2f}' for s in seconds[concurrency])})"
                )
        finally:
            server.terminate()
            try:
                server.wait(timeout=15)
            except subprocess.TimeoutExpired:
                server.kill()


if __name__ == "__main__":
    main()
