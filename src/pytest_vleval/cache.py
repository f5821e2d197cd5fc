"""The persistent answer cache: fingerprints of models and cases, one JSON file per answered case.

An answer is reused only when everything that could change it is unchanged: the model's files (weights hashed
by content), the device and dtype asked for, the library versions, and the case itself (image bytes, system
prompt, questions, generation budget). Nothing here imports torch: a fully cached run never loads a model.

Layout under the cache folder (default ``.vleval/cache`` in the rootdir)::

    answers/<model label>-<model fingerprint[:16]>/<entry key>.json   one answered case
    file-hashes/<sha256 of the path>.json                              content hashes of big files,
                                                                       reused while (size, mtime_ns) match
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pytest

    from pytest_vleval.cases import Case
    from pytest_vleval.models import Backend, ModelSpec
    from pytest_vleval.options import VlOptions

# Bump when the meaning of an entry changes (e.g. how prompts are built), so old entries are never reused.
CACHE_FORMAT = 1
# Distributions whose versions can change a transformers model's answers.
LIBRARIES = (
    "torch",
    "torchvision",
    "transformers",
    "tokenizers",
    "accelerate",
    "safetensors",
    "pillow",
    "numpy",
    "bitsandbytes",
)
PLUGIN_DISTRIBUTION = "pytest-vleval"
# Files at least this big have their content hash memoised on disk; smaller ones are hashed each run.
MEMO_MIN_BYTES = 1 << 20
_CHUNK = 1 << 22


def library_versions(names: Sequence[str] = LIBRARIES) -> dict[str, str]:
    """Installed versions read from package metadata (no imports); 'absent' for a missing distribution."""
    versions = {}
    for name in (*names, PLUGIN_DISTRIBUTION):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


# Our own code that turns a conversation into an answer on the transformers path (prompts, decoding,
# post-processing): an edit to it, released or not, must not reuse answers made before it.
ANSWER_CODE = ("hf.py", "families.py", "precision.py", "devices.py")


def answer_code_hash() -> str:
    digest = hashlib.sha256()
    for name in ANSWER_CODE:
        with contextlib.suppress(OSError):
            digest.update(name.encode() + b"\0" + (Path(__file__).parent / name).read_bytes())
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _sha256_text(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _digest(payload: object) -> str:
    return _sha256_text(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str))


def write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that readers see the old file or the whole new one, never a part.

    The temporary file lives in the same folder, so ``os.replace`` is an atomic rename even when several
    processes (xdist workers) write the same entry at once: the last rename wins and each one is complete.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


class AnswerCache:
    """Answers on disk, one file per (model fingerprint, case fingerprint)."""

    def __init__(self, root: Path, *, read: bool = True) -> None:
        self.root = Path(root)
        self.read = read  # False with --vl-refresh: regenerate and overwrite
        self.hits = 0
        self.writes = 0
        self.write_error: str | None = None
        self._file_hashes: dict[tuple[str, int, int], str] = {}

    def _prepare_root(self) -> None:
        if (self.root / ".gitignore").exists():
            return
        self.root.mkdir(parents=True, exist_ok=True)
        write_atomic(self.root / "CACHEDIR.TAG", b"Signature: 8a477f597d28d172789f06886806bc55\n")
        write_atomic(self.root / ".gitignore", b"# created by pytest-vleval: answers of models under test\n*\n")

    def file_hash(self, path: Path) -> str:
        """sha256 of a file's content; a big file's hash is reused while its path, size and mtime_ns match."""
        real = Path(os.path.realpath(path))
        stat = real.stat()
        memo_key = (str(real), stat.st_size, stat.st_mtime_ns)
        if memo_key in self._file_hashes:
            return self._file_hashes[memo_key]
        if stat.st_size < MEMO_MIN_BYTES:
            digest = sha256_file(real)
        else:
            memo = self.root / "file-hashes" / f"{_sha256_text(str(real))[:32]}.json"
            digest = ""
            with contextlib.suppress(OSError, ValueError):
                data = json.loads(memo.read_text())
                if [data["path"], data["size"], data["mtime_ns"]] == list(memo_key):
                    digest = str(data["sha256"])
            if not digest:
                digest = sha256_file(real)
                record = {"path": str(real), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "sha256": digest}
                with contextlib.suppress(OSError):
                    self._prepare_root()
                    write_atomic(memo, json.dumps(record).encode())
        self._file_hashes[memo_key] = digest
        return digest

    def entry_path(self, model: ModelFingerprint, case_fingerprint: str) -> Path:
        assert model.key is not None
        key = _sha256_text(model.key + ":" + case_fingerprint)
        label = re.sub(r"[^A-Za-z0-9_.-]", "_", model.label)[:60]
        return self.root / "answers" / f"{label}-{model.key[:16]}" / f"{key}.json"

    def get(self, model: ModelFingerprint, case_fingerprint: str, turns: int) -> dict[str, Any] | None:
        """The stored entry, or None (absent, unreadable, or not for exactly this model and case)."""
        if not self.read or model.key is None:
            return None
        try:
            data = json.loads(self.entry_path(model, case_fingerprint).read_bytes())
        except (OSError, ValueError):
            return None
        answers = data.get("answers") if isinstance(data, dict) else None
        if (
            data.get("format") != CACHE_FORMAT
            or data.get("model_fingerprint") != model.key
            or data.get("case_fingerprint") != case_fingerprint
            or not isinstance(answers, list)
            or len(answers) != turns
            or not all(isinstance(a, str) for a in answers)
        ):
            return None
        self.hits += 1
        return data

    def put(self, model: ModelFingerprint, case_fingerprint: str, record: dict[str, Any]) -> None:
        """Store one answered case; a failure to write is remembered for the summary, never raised."""
        if model.key is None:
            return
        entry = {
            "format": CACHE_FORMAT,
            "model_fingerprint": model.key,
            "case_fingerprint": case_fingerprint,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            **record,
        }
        try:
            self._prepare_root()
            write_atomic(self.entry_path(model, case_fingerprint), json.dumps(entry, indent=1).encode())
        except OSError as exc:
            self.write_error = f"{type(exc).__name__}: {exc}"
            return
        self.writes += 1


@dataclass(frozen=True)
class ModelFingerprint:
    """What identifies a model's answers: `key` (None: its answers are not cached) and a description."""

    label: str
    key: str | None
    basis: str  # what the key was computed from, or why there is none


def hub_cache_dir() -> Path:
    """The Hugging Face hub cache folder, by huggingface_hub's rules (read at each call, no import)."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    if os.environ.get("HF_HOME"):
        return Path(os.environ["HF_HOME"]).expanduser() / "hub"
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg).expanduser() / "huggingface" / "hub"


def hub_snapshot(repo_id: str, revision: str = "main") -> Path | None:
    """The local snapshot folder a hub id resolves to offline (``refs/<revision>``), or None."""
    repo = hub_cache_dir() / ("models--" + repo_id.replace("/", "--"))
    try:
        commit = (repo / "refs" / revision).read_text().strip()
    except OSError:
        return None
    snapshot = repo / "snapshots" / commit
    return snapshot if commit and (snapshot / "config.json").is_file() else None


def directory_fingerprint(folder: Path, cache: AnswerCache) -> str:
    """Hash of every top-level file a loader may read: weights, configs, processor, tokenizer, code."""
    digest = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_file())
    if not files:
        raise OSError(f"no files in {folder}")
    for file in files:
        digest.update(f"{file.name}\0{cache.file_hash(file)}\n".encode())
    return digest.hexdigest()


def accelerator(device: str) -> str:
    """What `device` will run on, found without torch: GPU models differ in kernels, CPUs in SIMD paths."""
    if device == "cpu":
        return f"cpu-{platform.machine()}"
    if device == "mps":
        return "mps"
    names = []
    if os.environ.get("CUDA_VISIBLE_DEVICES", "unset").strip() not in ("", "-1"):
        for info in sorted(Path("/proc/driver/nvidia/gpus").glob("*/information")):
            with contextlib.suppress(OSError):
                for line in info.read_text().splitlines():
                    if line.startswith("Model:"):
                        names.append(line.split(":", 1)[1].strip())
    if names:
        return "cuda-" + "+".join(names)
    if device == "auto" and sys.platform == "darwin" and platform.machine() == "arm64":
        return "mps"
    if device == "auto":
        return f"cpu-{platform.machine()}"
    return device


def case_fingerprint(case: Case, max_new_tokens: int, file_hash: Callable[[Path], str]) -> str:
    """Everything of a case that reaches the model. Earlier answers follow from the questions before them."""
    return _digest(
        {
            "images": [file_hash(p) for p in case.images],
            "system": case.system,
            "questions": [t.question for t in case.turns],
            "max_new_tokens": max_new_tokens,
        }
    )


def third_party_loaders(config: pytest.Config) -> bool:
    """Whether a conftest or plugin other than ours may load a model (``pytest_vleval_load_model``).

    Wrappers only observe the load (e.g. to measure memory), so they do not count.
    """
    impls = config.hook.pytest_vleval_load_model.get_hookimpls()
    return any(
        getattr(impl.plugin, "__name__", None) != "pytest_vleval.plugin"
        and not (getattr(impl, "wrapper", False) or getattr(impl, "hookwrapper", False))
        for impl in impls
    )


class ModelFingerprints:
    """Model fingerprints for the answer cache, computed once per model.

    A model the built-in transformers loader will load is fingerprinted from its files, without loading it.
    When another loader is registered (hook ``pytest_vleval_load_model``), the model is loaded first to learn
    which backend answers: a third-party backend is cached only if it gives a ``fingerprint`` (in ``info`` or
    as an attribute) that changes whenever its answers may.
    """

    def __init__(
        self,
        options: VlOptions,
        cache: AnswerCache,
        load: Callable[[ModelSpec], Backend],
        third_party: Callable[[], bool],
    ) -> None:
        self.options = options
        self.cache = cache
        self._load = load
        self._third_party = third_party
        self._known: dict[str, ModelFingerprint] = {}

    def __call__(self, spec: ModelSpec) -> ModelFingerprint:
        if spec.label not in self._known:
            self._known[spec.label] = self._compute(spec)
        return self._known[spec.label]

    def _compute(self, spec: ModelSpec) -> ModelFingerprint:
        # A served model (openai://...) has no files here; another loader may take any spec.
        if "://" in spec.source or self._third_party():
            backend = self._load(spec)
            hf = sys.modules.get("pytest_vleval.hf")
            if hf is None or not isinstance(backend, hf.TransformersBackend):
                return self._backend_fingerprint(spec, backend)
        return self._files_fingerprint(spec)

    def _common(self) -> dict[str, object]:
        return {
            "format": CACHE_FORMAT,
            "device": self.options.device,
            "accelerator": accelerator(self.options.device),
            "dtype": self.options.dtype,
            "quantization": getattr(self.options, "quantization", "none"),
            "trust_remote_code": self.options.trust_remote_code,
        }

    def _files_fingerprint(self, spec: ModelSpec) -> ModelFingerprint:
        if spec.is_local:
            folder = Path(spec.source)
            where = f"files of {folder}"
        else:
            snapshot = hub_snapshot(spec.source)
            if snapshot is None:
                return ModelFingerprint(
                    spec.label, None, f"hub id {spec.source!r} has no local snapshot to fingerprint"
                )
            folder = snapshot
            where = f"local snapshot {snapshot.name[:12]} of {spec.source}"
        try:
            files = directory_fingerprint(folder, self.cache)
        except OSError as exc:
            return ModelFingerprint(spec.label, None, f"cannot read {folder}: {exc}")
        key = _digest(
            {
                **self._common(),
                "backend": "transformers",
                "files": files,
                "code": answer_code_hash(),
                "versions": library_versions(),
            }
        )
        return ModelFingerprint(spec.label, key, where)

    def _backend_fingerprint(self, spec: ModelSpec, backend: Backend) -> ModelFingerprint:
        info = getattr(backend, "info", None) or {}
        given = info.get("fingerprint") or getattr(backend, "fingerprint", None)
        kind = f"{type(backend).__module__}.{type(backend).__qualname__}"
        if not given:
            return ModelFingerprint(spec.label, None, f"its backend {type(backend).__name__} gives no fingerprint")
        versions = library_versions(())
        key = _digest({**self._common(), "backend": kind, "fingerprint": str(given), "versions": versions})
        return ModelFingerprint(spec.label, key, f"fingerprint of backend {type(backend).__name__}")
