"""Inference engines behind one interface; each engine's runtime is imported only when chosen."""

from __future__ import annotations

from ranksam_ros.backends.base import Backend, Encoded, ModelInfo
from ranksam_ros.backends.flip_tta import TTA_MODES, check_tta, with_tta

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def create_backend(
    name: str,
    model: str = "camvid-tiny",
    adapter: str | None = "none",
    threads: int = 0,
    tta: str = "none",
) -> Backend:
    """Load ``model`` (+ ``adapter``) into the engine ``name``.

    Args:
        name: ``torch``, ``onnxruntime`` or ``tensorrt``.
        model: For ``torch`` a model name or path; for the others an export directory
            (``ranksam export`` output) or a model name whose export is cached.
        adapter: Adapter name/path or ``none`` (torch only; exports carry theirs).
        threads: CPU threads (0 = library default).
        tta: Test-time augmentation: ``none`` or ``flip`` (frame and mirror image averaged,
            twice the cost; :mod:`ranksam_ros.backends.flip_tta`).

    Raises:
        ValueError: unknown engine name or tta mode.
        ImportError: the engine's runtime is not installed (with the install hint).
    """
    check_tta(tta)  # before the (slow) model load
    return with_tta(_engine(name, model, adapter, threads), tta)


def _engine(name: str, model: str, adapter: str | None, threads: int) -> Backend:
    if name == "torch":
        from ranksam_ros.backends.torch_backend import TorchBackend
        from ranksam_ros.modeling.registry import build_model

        return TorchBackend(build_model(model, adapter=adapter), threads=threads)
    if name == "onnxruntime":
        from ranksam_ros.backends.onnx_backend import OnnxBackend

        return OnnxBackend.from_model(model, adapter=adapter, threads=threads)
    if name == "tensorrt":
        from ranksam_ros.backends.tensorrt_backend import TensorRTBackend

        return TensorRTBackend.from_model(model, adapter=adapter)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["BACKENDS", "TTA_MODES", "Backend", "Encoded", "ModelInfo", "create_backend"]
