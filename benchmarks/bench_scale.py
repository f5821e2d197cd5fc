"""The plugin's own per-case cost at scale: N YAML cases through a no-op backend vs N trivial parametrised pytest
tests, each run a whole process, the two interleaved, for several N.

Every case asks its own question (``say: w<i>``), so each has its own answer-cache entry. The backend answers
instantly from a conftest hook (``pytest_vleval_load_model``), so only pytest and the plugin cost anything. Modes
(plugin vs plain pytest):

- ``collect``: ``--collect-only -q`` vs the same;
- ``run``: a full run with the answer cache off (``--vl-no-cache``) vs a full run;
- ``stored``: a first run with an empty answer cache, storing every answer, vs a full run;
- ``cached``: a rerun whose every answer is in the answer cache vs a full run;
- ``xdist``: ``-n 2`` (cache off) vs ``-n 2``;
- ``outputs``: a full run writing ``--vl-json`` and ``--vl-report`` vs a full run writing ``--junitxml``.

Wall seconds, CPU seconds (user + system, the process and its children) and peak RSS of each process come from
``os.wait4``. Bytecode is written and warmed first (``PYTHONDONTWRITEBYTECODE`` is dropped: a user's install has
.pyc files), so both sides start as they would on a user's machine. Prints the table, ratio = plugin / plain.

    .venv/bin/python benchmarks/bench_scale.py                         # 2,000 and 20,000 cases, 1 round
    .venv/bin/python benchmarks/bench_scale.py --sizes 2000 20000 200000 --rounds 3
    .venv/bin/python benchmarks/bench_scale.py --modes collect run --sizes 20000
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODES = ("collect", "run", "stored", "cached", "xdist", "outputs")
IMAGES = 20

CONFTEST = '''
class Noop:
    """Answers 'say: X' with X at once: only pytest and the plugin cost anything."""

    def __init__(self, spec):
        self.spec = spec
        self.fingerprint = "noop-1"
        self.info = {"device": "cpu", "dtype": "none", "architecture": "Noop", "fingerprint": "noop-1"}

    def generate(self, conversations):
        return [c.question.split("say:", 1)[1].strip() for c in conversations]

    def close(self):
        pass


def pytest_vleval_load_model(config, spec, options):
    return Noop(spec)
'''

PLAIN = """
import pytest


@pytest.mark.parametrize("i", range({n}))
def test_plain(i):
    assert f"w{{i}}" == f"w{{i}}"
"""


def make_suite(folder: Path, n: int) -> None:
    from PIL import Image

    (folder / "images").mkdir(parents=True)
    for i in range(IMAGES):
        Image.new("RGB", (32, 32), (i * 10, 60, 120)).save(folder / "images" / f"img{i}.png")
    with (folder / "test_cases.yaml").open("w") as out:
        out.write("defaults: {scorer: exact, max_new_tokens: 8}\ncases:\n")
        for i in range(n):
            out.write(
                f"  - {{id: case-{i}, image: images/img{i % IMAGES}.png, question: 'say: w{i}', expected: w{i}}}\n"
            )
    (folder / "conftest.py").write_text(CONFTEST)
    (folder / "test_plain.py").write_text(PLAIN.format(n=n))


def command(mode: str, side: str, fresh: str = "") -> list[str]:
    """The command line of one process; `fresh` names an empty answer-cache folder (mode ``stored``)."""
    base = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
    target = ["test_cases.yaml"] if side == "plugin" else ["test_plain.py"]
    extra = {
        ("collect", "plugin"): ["--collect-only"],
        ("collect", "plain"): ["--collect-only"],
        ("run", "plugin"): ["--vl-no-cache"],
        ("stored", "plugin"): [f"--vl-cache-dir={fresh}"],
        ("xdist", "plugin"): ["--vl-no-cache", "-n", "2"],
        ("xdist", "plain"): ["-n", "2"],
        ("outputs", "plugin"): ["--vl-no-cache", "--vl-json=out/run.json", "--vl-report=out/report.html"],
        ("outputs", "plain"): ["--junitxml=out/junit.xml"],
    }.get((mode, side), [])
    return [*base, *target, *extra]


def measure(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, float, float]:
    """(wall s, CPU s, peak RSS MiB) of one whole process (its children's CPU included)."""
    started = time.perf_counter()
    process = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(cmd)} exited {process.returncode}: {process.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[2000, 20000])
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--rounds", type=int, default=1, help="interleaved rounds; the median is shown")
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    rows = []
    with tempfile.TemporaryDirectory(prefix="vleval-bench-scale-") as tmp:
        for n in args.sizes:
            folder = Path(tmp) / str(n)
            make_suite(folder, n)
            (folder / "out").mkdir()
            # Bytecode and the answer cache (for the cached mode) first, not timed.
            measure(command("collect", "plain"), folder, env)
            measure(command("cached", "plugin"), folder, env)
            for mode in args.modes:
                samples: dict[str, list[tuple[float, float, float]]] = {"plugin": [], "plain": []}
                for round_ in range(args.rounds):
                    for side in ("plain", "plugin"):
                        fresh = str(Path(tmp) / f"fresh-{n}-{mode}-{round_}")
                        samples[side].append(measure(command(mode, side, fresh), folder, env))
                med = {side: [statistics.median(s[i] for s in got) for i in range(3)] for side, got in samples.items()}
                rows.append((n, mode, med["plain"], med["plugin"]))
                plain, plugin = med["plain"], med["plugin"]
                print(
                    f"{n:>7,} {mode:8s} plain {plain[0]:7.2f} s  plugin {plugin[0]:7.2f} s  "
                    f"ratio {plugin[0] / plain[0]:.2f}x (CPU {plugin[1] / plain[1]:.2f}x, "
                    f"RSS {plugin[2] / plain[2]:.2f}x)",
                    flush=True,
                )
    print("\n| cases | mode | plain wall s | plugin wall s | wall ratio | CPU ratio | peak RSS MiB (plain / plugin) |")
    print("|---:|---|---:|---:|---:|---:|---|")
    for n, mode, plain, plugin in rows:
        print(
            f"| {n:,} | {mode} | {plain[0]:.2f} | {plugin[0]:.2f} | {plugin[0] / plain[0]:.2f}x | "
            f"{plugin[1] / plain[1]:.2f}x | {plain[2]:.0f} / {plugin[2]:.0f} |"
        )


if __name__ == "__main__":
    main()
