"""Where a hub model loads from, decided before transformers is asked: the network, the local cache, or nowhere.

transformers retries each file of an unreachable hub for about 35 s (huggingface_hub's backoff: 1, 2, 4, 8, 8 s)
and a model has several files, so a machine without network waited minutes before failing every case. Here the
hub is probed once per run with one short request: when it cannot be reached, a model in the local cache loads
from the cache (``local_files_only``), and one that is not fails at once with what to do. ``HF_HUB_OFFLINE=1``
skips the probe. The cache layout is huggingface_hub's; nothing here imports it until a probe is needed.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

from pytest_vleval.backends.base import ModelLoadError, ModelSpec

__all__ = ["hub_cache_dir", "hub_endpoint", "hub_offline", "hub_snapshot", "hub_unreachable", "local_files_only"]

PROBE_SECONDS = 5.0
_TRUE = ("1", "true", "yes", "on")


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


def hub_offline() -> str | None:
    """The variable that puts the hub offline (``HF_HUB_OFFLINE`` or ``TRANSFORMERS_OFFLINE``), if one does."""
    for variable in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(variable, "").strip().lower() in _TRUE:
            return variable
    return None


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


@functools.lru_cache(maxsize=4)
def hub_unreachable(endpoint: str, timeout: float = PROBE_SECONDS) -> str | None:
    """Why `endpoint` cannot be reached (one request, no retries, through huggingface_hub's own HTTP client, so
    its proxy settings apply), or None when it answers at all. Asked once per run and endpoint."""
    try:
        from huggingface_hub.utils import get_session
    except ImportError:
        return None  # transformers will say what is missing
    try:
        get_session().head(f"{endpoint}/api/models", timeout=timeout)
    except Exception as exc:  # the client's own connection errors: DNS, refused, timeout, TLS
        return str(exc) or type(exc).__name__
    return None


def local_files_only(spec: ModelSpec) -> bool:
    """Whether `spec` must load from the local cache only; raises :class:`ModelLoadError` (at once, with what to
    do) when the hub cannot be used and the cache does not have the model. A local directory never asks the hub."""
    if spec.is_local or "://" in spec.source:
        return False
    cached = hub_snapshot(spec.source) is not None
    offline = hub_offline()
    if offline is None:
        reason = hub_unreachable(hub_endpoint())
        if reason is None:
            return False
        why = f"the Hugging Face Hub ({hub_endpoint()}) cannot be reached: {reason}"
    else:
        why = f"{offline}=1 is set"
    if cached:
        return True
    raise ModelLoadError(
        f"cannot load model {spec.requested!r} (hub id {spec.source}): {why}, and the model is not in the local "
        f"cache {hub_cache_dir()}.\n"
        f"  fix: download it where there is network (`hf download {spec.source}`) and copy that cache here (or set "
        f"HF_HOME to it), or pass a local directory: --vl-model=/path/to/{spec.source.split('/')[-1]}"
        + ("" if offline else "; set HF_HUB_OFFLINE=1 to use only the cache without asking the hub")
    )
