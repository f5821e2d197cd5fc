"""The built-in loader (the last ``pytest_vleval_load_model`` implementation): services (http://, gradio://),
served models over HTTP (openai://, or an engine --vl-serve starts), the rest through transformers. Each backend
module is imported only when a model of its kind loads."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pytest_vleval.backends.base import Backend, ModelLoadError, ModelSpec
from pytest_vleval.backends.openai_api import is_openai_spec
from pytest_vleval.backends.registry import REMOTE_CODE_ALIASES
from pytest_vleval.backends.service_spec import is_service_spec

if TYPE_CHECKING:
    from pytest_vleval.options import VlOptions

__all__ = ["load_backend"]


def load_backend(spec: ModelSpec, options: VlOptions) -> Backend:
    if is_service_spec(spec.source):
        if spec.source.lower().startswith("gradio"):
            from pytest_vleval.backends.gradio import GradioBackend

            return GradioBackend(spec, options)
        from pytest_vleval.backends.service import ServiceBackend

        return ServiceBackend(spec, options)
    if options.serve is not None and not is_openai_spec(spec.source):
        from pytest_vleval.backends.managed import ManagedBackend

        return ManagedBackend(spec, options)
    if is_openai_spec(spec.source):
        from pytest_vleval.backends.openai import OpenAIBackend

        return OpenAIBackend(spec, options)
    from pytest_vleval.backends.hf import TransformersBackend

    try:
        return TransformersBackend(spec, options)
    except ModelLoadError as exc:
        if spec.requested in REMOTE_CODE_ALIASES and "pytest_vleval_load_model" not in str(exc):
            raise ModelLoadError(
                f"{exc} (a remote-code family: load it with a pytest_vleval_load_model hook, see docs/families.md)"
            ) from exc
        raise
