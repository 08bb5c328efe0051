"""Inference engines behind one interface; each engine's runtime is imported only when chosen."""

from __future__ import annotations

from ranksam_ros.backends.base import Backend, Encoded, ModelInfo
from ranksam_ros.backends.flip_tta import TTA_MODES, with_tta
from ranksam_ros.config import BACKENDS, BackendConfig


def create_backend(config: BackendConfig) -> Backend:
    """Load ``config.model`` (+ ``config.adapter``) into the engine ``config.backend``.

    Args:
        config: Engine, model, adapter, CPU threads and test-time augmentation (validated
            when the config is built, so a bad name fails before the slow model load).

    Raises:
        ImportError: the engine's runtime is not installed (with the install hint).
    """
    return with_tta(_engine(config), config.tta)


def _engine(config: BackendConfig) -> Backend:
    name, model, adapter, threads = (
        config.backend,
        config.model,
        config.adapter_spec,
        config.threads,
    )
    if name == "torch":
        from ranksam_ros.backends.torch_backend import TorchBackend
        from ranksam_ros.modeling.registry import build_model

        task_model = None
        if config.tasks:
            from ranksam_ros.modeling.task_io import load_task_model

            task_model = load_task_model(model, config.tasks)
        return TorchBackend(build_model(model, adapter=adapter), threads, task_model=task_model)
    if name == "onnxruntime":
        from ranksam_ros.backends.onnx_backend import OnnxBackend

        return OnnxBackend.from_model(
            model,
            adapter=adapter,
            threads=threads,
            tasks=config.tasks,
            int8=config.precision == "int8",
        )
    if name == "tensorrt":
        from ranksam_ros.backends.tensorrt_backend import TensorRTBackend

        if config.tasks:
            raise ValueError("tasks run on the torch and onnxruntime backends, not on tensorrt")
        return TensorRTBackend.from_model(model, adapter=adapter)
    raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(BACKENDS)}")


__all__ = ["TTA_MODES", "Backend", "Encoded", "ModelInfo", "create_backend"]
