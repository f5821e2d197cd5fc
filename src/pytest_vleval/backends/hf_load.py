"""Loading a transformers model: its processor, then the first Auto class that takes its config.

From the hub cache alone when the hub cannot be reached (``backends/hub.py``), with the flag to pass when a model
needs its own code, and without transformers' progress bars (pytest would capture them into a case's report).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_vleval.backends.base import ModelLoadError, ModelSpec, UnsupportedPrecision
from pytest_vleval.backends.hub import local_files_only
from pytest_vleval.backends.precision import quantization_config, quantize_in_place

if TYPE_CHECKING:
    import torch

    from pytest_vleval.options import VlOptions

__all__ = ["load_model", "load_processor_and_model"]


def load_processor_and_model(
    spec: ModelSpec, options: VlOptions, *, device: str, dtype: torch.dtype, quantization: str = "none"
) -> tuple[Any, Any]:
    """The processor and the model; a :class:`ModelLoadError` saying what to do when they cannot be loaded."""
    import transformers

    offline = local_files_only(spec)
    bars = transformers.utils.logging.is_progress_bar_enabled()
    transformers.utils.logging.disable_progress_bar()
    try:
        # The config first: a model that needs its own code says so here, before any processor error.
        transformers.AutoConfig.from_pretrained(
            spec.source, trust_remote_code=options.trust_remote_code, local_files_only=offline
        )
        processor = transformers.AutoProcessor.from_pretrained(
            spec.source, trust_remote_code=options.trust_remote_code, local_files_only=offline
        )
        model = load_model(
            spec.source,
            dtype=dtype,
            device=device,
            trust_remote_code=options.trust_remote_code,
            quantization=quantization_config(quantization, dtype),
            local_files_only=offline,
        )
        if quantization.startswith("quanto-"):
            try:
                quantize_in_place(model, quantization)
            except Exception as exc:  # a layer shape the integer kernels do not take: that variant is skipped
                raise UnsupportedPrecision(
                    f"{quantization} (optimum-quanto) cannot quantise {spec.requested}: {type(exc).__name__}: {exc}"
                ) from exc
    except ModelLoadError:
        raise
    except (OSError, ValueError, ImportError) as exc:
        where = "local directory" if spec.is_local else "hub id (needs network or a local cache)"
        message = f"cannot load model {spec.requested!r} from {where} {spec.source}: {exc}"
        if "trust_remote_code" in str(exc) and not options.trust_remote_code:
            message = (
                f"cannot load model {spec.requested!r} ({spec.source}): its code lives in the model's repository, "
                "which transformers runs only when asked: pass --vl-trust-remote-code (it executes that code)"
            )
        raise ModelLoadError(message) from exc
    finally:
        if bars:
            transformers.utils.logging.enable_progress_bar()
    return processor, model


def load_model(
    source: str,
    *,
    dtype: torch.dtype,
    device: str,
    trust_remote_code: bool,
    quantization: Any = None,
    local_files_only: bool = False,
) -> Any:
    import transformers

    kwargs: dict[str, Any] = {"dtype": dtype, "trust_remote_code": trust_remote_code}
    if local_files_only:
        kwargs["local_files_only"] = True
    if quantization is not None:
        kwargs["quantization_config"] = quantization
    if device == "cuda":
        kwargs["device_map"] = "auto"
    elif device.startswith("cuda:"):
        kwargs["device_map"] = {"": device}
    errors = []
    for name in ("AutoModelForImageTextToText", "AutoModelForVision2Seq", "AutoModelForCausalLM"):
        auto = getattr(transformers, name, None)
        if auto is None:
            continue
        try:
            model = auto.from_pretrained(source, **kwargs)
        except ValueError as exc:  # "Unrecognized configuration class ... for this kind of AutoModel"
            errors.append(f"{name}: {str(exc).splitlines()[0]}")
            continue
        if "device_map" not in kwargs:
            model = model.to(device)
        return model.eval()
    raise ModelLoadError(f"no transformers Auto class can load {source}: " + "; ".join(errors))
