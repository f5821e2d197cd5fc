"""The Java side of the caption metrics: finding Java, PTBTokenizer, the METEOR process and SPICE.

Same jars and command lines as pycocoevalcap, with what it lacks: nothing is written into site-packages (input
files and SPICE's cache live in our cache folder), an English locale for METEOR and the tokenizer, the
``--add-opens`` flags modern Java needs for SPICE, and a skip reason instead of a download where SPICE's Stanford
CoreNLP 3.6.0 jars are missing.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from pytest_vleval.scoring.ptb_fallback import LINE_BREAKS

JAVA_METRICS: tuple[str, ...] = ("METEOR", "SPICE")
SPICE_CORENLP_ENV = "VLEVAL_SPICE_CORENLP"
CORENLP_JARS: tuple[str, str] = ("stanford-corenlp-3.6.0.jar", "stanford-corenlp-3.6.0-models.jar")

LOCALE_FLAGS: tuple[str, ...] = ("-Duser.language=en", "-Duser.country=US")
# FST (SPICE's cache serialiser) reflects into these JDK packages; Java 16+ refuses unless they are opened.
# Found by running SPICE's LmdbTupleDB on Java 17 and 25 until no InaccessibleObjectException was left.
SPICE_ADD_OPENS: tuple[str, ...] = tuple(
    f"--add-opens=java.base/{package}=ALL-UNNAMED"
    for package in ("java.lang", "java.math", "java.util", "java.util.concurrent", "java.net", "java.text")
)
# SPICE 1.0 pretty-prints its -out file with the Nashorn JavaScript engine, which Java 15 removed.
NASHORN_REMOVED_IN = 15

_TOKENIZER_JAR = "stanford-corenlp-3.4.1.jar"
_TOKENIZER_CLASS = "edu.stanford.nlp.process.PTBTokenizer"
_METEOR_JAR = "meteor-1.5.jar"
_SPICE_JAR = "spice-1.0.jar"


class CaptionMetricError(RuntimeError):
    """A Java metric process failed in a way that is not a missing dependency."""


@dataclass(frozen=True)
class JavaStatus:
    """What the Java preflight found."""

    path: str | None
    version: str | None
    major: int | None
    usable: bool
    reason: str = ""


def pycocoevalcap_dir() -> Path:
    """The installed pycocoevalcap package folder (a namespace package: no ``__file__``)."""
    import pycocoevalcap

    return Path(next(iter(pycocoevalcap.__path__)))


def java_status() -> JavaStatus:
    """Find ``java`` on PATH and check that ``java -version`` runs. Cached per executable."""
    path = shutil.which("java")
    if path is None:
        return JavaStatus(None, None, None, False, "java not found on PATH")
    return _probe_java(os.path.realpath(path))


@functools.lru_cache(maxsize=8)
def _probe_java(path: str) -> JavaStatus:
    try:
        proc = subprocess.run([path, "-version"], capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return JavaStatus(path, None, None, False, f"`{path} -version` failed: {exc}")
    output = (proc.stderr or "") + (proc.stdout or "")
    if proc.returncode != 0:
        last = output.strip().splitlines()[-1:] or ["no output"]
        return JavaStatus(path, None, None, False, f"`{path} -version` exited {proc.returncode}: {last[0]}")
    match = re.search(r'version "([^"]+)"', output)
    version = match.group(1) if match else None
    return JavaStatus(path, version, _java_major(version), True)


def _java_major(version: str | None) -> int | None:
    if not version:
        return None
    parts = re.findall(r"\d+", version)
    if not parts:
        return None
    major = int(parts[0])
    if major == 1 and len(parts) > 1:  # "1.8.0_292" is Java 8
        major = int(parts[1])
    return major


def start_meteor(java: str, *, cwd: Path, tmp: Path) -> tuple[Any, IO[bytes]]:
    """pycocoevalcap's ``Meteor`` scorer on a METEOR process of ours, and the file its stderr goes to.

    Same command as pycocoevalcap's (its ``Meteor`` builds and starts it in ``__init__``), plus an English locale,
    run from our cache folder rather than from inside site-packages. The scorer object is made without its
    ``__init__`` (which would start a second, locale-less process); ``meteor_cmd``, ``meteor_p`` and ``lock``
    are the attributes its ``compute_score`` reads.

    The process's lifetime is ours (:func:`stop_process`, called by the caller's finalizer), not the scorer's:
    pycocoevalcap's ``Meteor.__del__`` takes the scorer's lock, which ``compute_score`` never releases when it is
    interrupted (it has no ``finally``), so after a Ctrl-C during METEOR the interpreter hung forever in
    ``__del__``. :func:`owned_meteor_class`'s ``__del__`` does nothing.
    """
    jar = pycocoevalcap_dir() / "meteor" / _METEOR_JAR
    command = [java, "-jar", "-Xmx2G", *LOCALE_FLAGS, str(jar), "-", "-", "-stdio", "-l", "en", "-norm"]
    stderr = tempfile.TemporaryFile(dir=tmp)
    process = subprocess.Popen(command, cwd=cwd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr)
    owned: Any = owned_meteor_class()
    meteor = owned.__new__(owned)
    meteor.meteor_cmd = command
    meteor.meteor_p = process
    meteor.lock = threading.Lock()
    return meteor, stderr


@functools.cache
def owned_meteor_class() -> type:
    """pycocoevalcap's ``Meteor`` without its ``__del__`` (see :func:`start_meteor`)."""
    from pycocoevalcap.meteor.meteor import Meteor

    class OwnedMeteor(Meteor):  # type: ignore[misc]
        def __del__(self) -> None:
            pass  # the process is stopped by whoever started it; never wait on the scorer's lock

    return OwnedMeteor


def meteor_error(stderr: IO[bytes] | None) -> str:
    """What the METEOR process wrote to its stderr (the end of it), for a failure message."""
    if stderr is None:
        return ""
    stderr.seek(0)
    return "\n" + _tail(stderr.read())


def stop_process(process: subprocess.Popen[bytes], stderr: IO[bytes] | None = None) -> None:
    try:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=1)  # METEOR exits on end of input; if it is still loading, stop it
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    finally:
        if process.stdout is not None:
            process.stdout.close()
        if stderr is not None:
            stderr.close()


def no_java_reason(java: JavaStatus) -> str:
    return f"{java.reason} (install a Java runtime, 8 or newer, and put `java` on PATH)"


def ptb_tokenize(captions: Sequence[str], *, java: str, work_dir: str | os.PathLike[str]) -> list[str]:
    """pycocoevalcap's PTBTokenizer on ``captions``, one output per caption, without writing into its package.

    Same jar, command line, input (every caption a line, blank ones too, in the given order) and punctuation
    removal as ``pycocoevalcap.tokenizer.ptbtokenizer``: PTBTokenizer reads a line's last token in the light of
    the next line, so the same lines in the same order are what make the tokens COCOEvalCap's. The input file
    lives in ``work_dir`` and the process runs there. Every line break CoreNLP knows becomes a space (upstream
    replaces only "\\n", and any other one shifts every later caption onto the wrong image), and the output line
    count is checked, so a caption can never shift onto another.
    """
    from pycocoevalcap.tokenizer.ptbtokenizer import PUNCTUATIONS

    punctuation = frozenset(PUNCTUATIONS)
    lines = [LINE_BREAKS.sub(" ", caption) for caption in captions]
    if not any(line.strip() for line in lines):
        return [""] * len(lines)
    jar = pycocoevalcap_dir() / "tokenizer" / _TOKENIZER_JAR
    with tempfile.NamedTemporaryFile("wb", dir=work_dir, prefix="ptb-", suffix=".txt", delete=False) as handle:
        handle.write("\n".join(lines).encode())
        input_path = handle.name
    command = [java, *LOCALE_FLAGS, "-cp", str(jar), _TOKENIZER_CLASS, "-preserveLines", "-lowerCase", input_path]
    try:
        proc = subprocess.run(command, cwd=work_dir, capture_output=True, check=False)
    finally:
        os.remove(input_path)
    if proc.returncode != 0:
        raise CaptionMetricError(
            f"PTBTokenizer exited {proc.returncode}: {_tail(proc.stderr)}\ncommand: {' '.join(command)}"
        )
    out_lines = proc.stdout.decode("utf-8", errors="replace").split("\n")
    while len(out_lines) > len(lines) and out_lines[-1] == "":
        out_lines.pop()  # the newline after the last line, and trailing blank captions' lines, come back empty
    missing = len(lines) - len(out_lines)
    if missing > 0 and not any(line.strip() for line in lines[-missing:]):
        out_lines += [""] * missing  # blank captions at the end: PTBTokenizer may print nothing for them
    if len(out_lines) != len(lines):
        raise CaptionMetricError(
            f"PTBTokenizer returned {len(out_lines)} lines for {len(lines)} captions; refusing to guess "
            "which caption is which"
        )
    return [" ".join(word for word in line.rstrip().split(" ") if word not in punctuation) for line in out_lines]


@dataclass(frozen=True)
class SpiceSetup:
    """Everything needed to run SPICE: the java to use and the classpath (SPICE + CoreNLP 3.6.0 [+ Nashorn])."""

    java: str
    java_major: int | None
    spice_jar: Path
    classpath: tuple[Path, ...]


def spice_setup(java: JavaStatus, spice_jars: str | os.PathLike[str] | None = None) -> SpiceSetup | str:
    """Where SPICE can run, its :class:`SpiceSetup`; otherwise the reason it cannot and how to fix that.

    The CoreNLP 3.6.0 jars are looked for in ``spice_jars``, else ``$VLEVAL_SPICE_CORENLP``, else
    pycocoevalcap's own ``spice/lib`` (where its downloader would have put them). Nothing is downloaded.
    """
    if not java.usable or java.path is None:
        return no_java_reason(java)
    package_lib = pycocoevalcap_dir() / "spice" / "lib"
    spice_jar = pycocoevalcap_dir() / "spice" / _SPICE_JAR
    if spice_jars is not None:
        candidates = [(Path(spice_jars).expanduser(), "the spice_jars argument")]
    elif os.environ.get(SPICE_CORENLP_ENV):
        candidates = [(Path(os.environ[SPICE_CORENLP_ENV]).expanduser(), f"${SPICE_CORENLP_ENV}")]
    else:
        candidates = [(package_lib, "pycocoevalcap's spice/lib")]
    folder, source = candidates[0]
    if folder.is_file():
        folder = folder.parent
    missing = [name for name in CORENLP_JARS if not (folder / name).is_file()]
    how = (
        f"unzip stanford-corenlp-full-2015-12-09.zip (the archive pycocoevalcap would download from "
        f"nlp.stanford.edu/software/) and set {SPICE_CORENLP_ENV}=/path/to/stanford-corenlp-full-2015-12-09 "
        "(or pass spice_jars=...); pytest-vleval never downloads them"
    )
    if missing:
        not_found = " and ".join(missing)
        return f"SPICE needs the Stanford CoreNLP 3.6.0 jars; {not_found} not found in {folder} ({source}): {how}"
    classpath = [spice_jar, *(folder / name for name in CORENLP_JARS)]
    if java.major is not None and java.major >= NASHORN_REMOVED_IN:
        nashorn = sorted({*folder.glob("nashorn-core-*.jar"), *package_lib.glob("nashorn-core-*.jar")})
        if not nashorn:
            return (
                f"SPICE 1.0 writes its results with the Nashorn JavaScript engine, which Java {java.major} no longer "
                f"has: put nashorn-core-15.4.jar and its asm, asm-commons, asm-tree, asm-util and asm-analysis 7.3.1 "
                f"jars (Maven Central) next to the CoreNLP jars in {folder}, or put a Java 8 or 11 first on PATH"
            )
        jar_dir = nashorn[-1].parent
        classpath += [nashorn[-1], *sorted(jar_dir.glob("asm-*.jar"))]
    return SpiceSetup(java=java.path, java_major=java.major, spice_jar=spice_jar, classpath=tuple(classpath))


def spice_command(
    setup: SpiceSetup,
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    cache: Path,
    tmp: Path,
) -> list[str]:
    """The SPICE command line: pycocoevalcap's (``java -jar -Xmx8G spice-1.0.jar IN -cache C -out OUT -subset
    -silent``) with an explicit classpath (the CoreNLP jars may live anywhere), the ``--add-opens`` flags Java 9+
    needs (16+ refuses without them), an English locale and Java's temp folder (lmdbjni unpacks its native
    library there) inside our cache."""
    flags: list[str] = ["-Xmx8G"]
    if setup.java_major is None or setup.java_major >= 9:
        flags += SPICE_ADD_OPENS
    flags += [*LOCALE_FLAGS, f"-Djava.io.tmpdir={tmp}"]
    classpath = os.pathsep.join(str(path) for path in setup.classpath)
    return [
        setup.java,
        *flags,
        "-cp",
        classpath,
        "edu.anu.spice.SpiceScorer",
        str(input_path),
        "-cache",
        str(cache),
        "-out",
        str(output_path),
        "-subset",
        "-silent",
    ]


def run_spice(
    setup: SpiceSetup,
    gts: Mapping[Any, Sequence[str]],
    res: Mapping[Any, Sequence[str]],
    *,
    cache_dir: Path,
    work_dir: str | os.PathLike[str],
    runner: Callable[..., subprocess.CompletedProcess[bytes]] = subprocess.run,
) -> tuple[float, list[float]]:
    """SPICE on tokenised captions, as pycocoevalcap's ``Spice.compute_score`` does it (same input JSON, same
    parsing of the output: corpus score = mean of the per-image "All" F-scores, NaN where SPICE gives none)."""
    import numpy as np

    keys = list(gts)
    work = Path(work_dir)
    input_data = [{"image_id": i, "test": res[key][0], "refs": list(gts[key])} for i, key in enumerate(keys)]
    input_path = work / "spice-input.json"
    output_path = work / "spice-output.json"
    input_path.write_text(json.dumps(input_data, indent=2), encoding="utf-8")
    cache = cache_dir / "spice"
    java_tmp = work / "java-tmp"
    cache.mkdir(parents=True, exist_ok=True)
    java_tmp.mkdir(exist_ok=True)
    command = spice_command(setup, input_path, output_path, cache=cache, tmp=java_tmp)
    proc = runner(command, cwd=work, capture_output=True, check=False)
    if proc.returncode != 0 or not output_path.is_file():
        raise CaptionMetricError(f"SPICE exited {proc.returncode}: {_tail(proc.stderr)}\ncommand: {' '.join(command)}")
    try:
        results = json.loads(output_path.read_text(encoding="utf-8"))
        by_index = {int(item["image_id"]): _float_or_nan(item["scores"]["All"]["f"]) for item in results}
        scores = [by_index[i] for i in range(len(keys))]
    except (ValueError, KeyError, TypeError) as exc:
        raise CaptionMetricError(f"SPICE wrote an unreadable result file ({exc!r})") from exc
    return float(np.mean(np.array(scores))), scores


def _float_or_nan(value: Any) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _tail(data: bytes | str | None, lines: int = 8) -> str:
    if not data:
        return "(no output)"
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else data
    return "\n".join(text.strip().splitlines()[-lines:])
