"""Fingerprints for the answer cache: what identifies a model's answers and a case's inputs.

An answer is reused only when everything that could change it is unchanged: the model's files (weights hashed
by content), the device and dtype asked for, the library versions, our own code that turns a conversation into
an answer, and the case itself (image bytes, system prompt, questions, generation budget). Nothing here imports
torch: a fully cached run never loads a model.
"""

from __future__ import annotations

import ast
import contextlib
import hashlib
import importlib.util
import json
import os
import platform
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_vleval.backends.base import backend_type
from pytest_vleval.backends.hub import hub_snapshot
from pytest_vleval.predict.cache import CACHE_FORMAT, AnswerCache, sha256_text

if TYPE_CHECKING:
    import pytest

    from pytest_vleval.backends.base import Backend, ModelSpec
    from pytest_vleval.cases.casefile import Case
    from pytest_vleval.options import VlOptions

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
PACKAGE = "pytest_vleval"
# The module whose code turns a conversation into an answer on the transformers path. It and every module of
# this package it imports (found by reading their import statements) make up the answer code: an edit to any
# of them, released or not, must not reuse answers made before it.
ANSWER_CODE_ROOTS: tuple[str, ...] = ("pytest_vleval.backends.hf",)


def library_versions(names: Sequence[str] = LIBRARIES) -> dict[str, str]:
    """Installed versions read from package metadata (no imports); 'absent' for a missing distribution."""
    from pytest_vleval.records.run_info import library_versions as installed

    return {name: version or "absent" for name, version in installed((*names, PLUGIN_DISTRIBUTION)).items()}


def module_source(name: str) -> bytes:
    """The source of one of our modules, found the way ``import`` would find it (without importing it)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin or not spec.has_location:
        raise RuntimeError(f"answer cache: module {name} is not found; cannot fingerprint the answer code")
    return Path(spec.origin).read_bytes()


def _is_type_checking(node: ast.AST) -> bool:
    test = node.test if isinstance(node, ast.If) else None
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported(tree: ast.AST) -> Iterator[str]:
    """Every module of this package named by an import statement, anywhere in the tree (functions
    included) except ``if TYPE_CHECKING:`` blocks."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if _is_type_checking(node):
            continue
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            yield node.module
            yield from (f"{node.module}.{alias.name}" for alias in node.names)
        stack.extend(ast.iter_child_nodes(node))


def answer_code_modules(
    roots: Sequence[str] = ANSWER_CODE_ROOTS, source: Callable[[str], bytes] = module_source
) -> dict[str, bytes]:
    """The answer code: `roots` and the modules of this package they import, transitively, with their source."""
    found: dict[str, bytes] = {}
    pending = list(roots)
    while pending:
        name = pending.pop()
        if name in found:
            continue
        found[name] = source(name)
        for imported in _imported(ast.parse(found[name])):
            if imported.startswith(PACKAGE + ".") and imported not in found and _is_module(imported):
                pending.append(imported)
    return dict(sorted(found.items()))


def _is_module(name: str) -> bool:
    """``from pkg import name`` names a module only when ``pkg`` is a package with a module of that name (else
    it is an attribute). Looking at the parent's spec first means a module is never imported to find out:
    ``find_spec("a.b.c")`` would import ``a.b``, and a cached run must not import the transformers backend."""
    parent = name.rpartition(".")[0]
    try:
        spec = importlib.util.find_spec(parent)
        return (
            spec is not None
            and spec.submodule_search_locations is not None
            and importlib.util.find_spec(name) is not None
        )
    except (ImportError, ValueError):
        return False


def answer_code_hash(roots: Sequence[str] = ANSWER_CODE_ROOTS, source: Callable[[str], bytes] = module_source) -> str:
    digest = hashlib.sha256()
    for name, code in answer_code_modules(roots, source).items():
        digest.update(name.encode() + b"\0" + code + b"\0")
    return digest.hexdigest()


def _digest(payload: object) -> str:
    return sha256_text(json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str))


@dataclass(frozen=True)
class ModelFingerprint:
    """What identifies a model's answers: `key` (None: its answers are not cached) and a description."""

    label: str
    key: str | None
    basis: str  # what the key was computed from, or why there is none


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


def case_fingerprint(
    case: Case,
    max_new_tokens: int,
    file_hash: Callable[[Path], str],
    questions: Sequence[str],
    pixels: tuple[int | None, int | None] = (None, None),
) -> str:
    """Everything of a case that reaches the model: its images, the text of each turn as sent (format
    instructions and the family's grounding wording included) and the image-resolution limits. Earlier answers
    follow from the questions before them."""
    fields: dict[str, Any] = {
        "images": [file_hash(p) for p in case.images],
        "system": case.system,
        "questions": list(questions),
        "max_new_tokens": max_new_tokens,
    }
    if pixels != (None, None):  # absent when unset, so keys made before pixel limits existed still match
        fields["pixels"] = list(pixels)
    return _digest(fields)


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
            hf = sys.modules.get("pytest_vleval.backends.hf")
            if hf is None or not isinstance(backend, hf.TransformersBackend):
                return self._backend_fingerprint(spec, backend)
        return self._files_fingerprint(spec)

    def _common(self) -> dict[str, object]:
        return {
            "format": CACHE_FORMAT,
            "device": self.options.device,
            "accelerator": accelerator(self.options.device),
            "dtype": self.options.dtype,
            "quantization": self.options.quantization,
            "trust_remote_code": self.options.trust_remote_code,
            # served by an engine the plugin starts: its answers are that engine's (absent otherwise, so keys made
            # before --vl-serve existed still match)
            **({"serve": self.options.serve} if self.options.serve else {}),
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
                # a precision variant (MODEL@int8) answers as that precision (absent otherwise: older keys match)
                **({"precision": spec.precision} if spec.precision else {}),
                "backend": "transformers",
                "files": files,
                "code": answer_code_hash(),
                "versions": library_versions(),
            }
        )
        return ModelFingerprint(spec.label, key, where)

    def _backend_fingerprint(self, spec: ModelSpec, backend: Backend) -> ModelFingerprint:
        given = (backend.info or {}).get("fingerprint") or backend.fingerprint
        cls = backend_type(backend)
        kind = f"{cls.__module__}.{cls.__qualname__}"
        if not given:
            said = (backend.info or {}).get("cache")  # a service says why it is not cached
            return ModelFingerprint(
                spec.label, None, str(said) if said else f"its backend {cls.__name__} gives no fingerprint"
            )
        versions = library_versions(())
        key = _digest({**self._common(), "backend": kind, "fingerprint": str(given), "versions": versions})
        return ModelFingerprint(spec.label, key, f"fingerprint of backend {cls.__name__}")
