"""Multi-task adapter sets on disk: adapters + task heads, tied to the foundation they fit.

A set stores its tensor-LoRA factors and its heads (safetensors), the adapter config, the
semantic class list and a fingerprint of the foundation's weights, so a set trained on
another foundation is refused at load with an error that names both.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from ranksam_ros.adapters.inject import adapter_state_dict, is_adapter_param
from ranksam_ros.adapters.io import ADAPTER_FORMAT, read_adapter_config
from ranksam_ros.adapters.tensor_lora import TensorLoraConfig
from ranksam_ros.checkpoint import load_state_strict, load_tensors, save_tensors
from ranksam_ros.config_loader import to_dict
from ranksam_ros.modeling.multitask import MultiTaskSam
from ranksam_ros.modeling.ranksam import RankSam

KIND = "multitask"
HEADS = "heads."


def foundation_fingerprint(model: RankSam) -> str:
    """Short SHA-256 of the foundation's own weights (SAM and its heads).

    Adapters are left out and the names of wrapped layers are read as before wrapping
    (``x.base.weight`` -> ``x.weight``), so the fingerprint is the same with adapters in.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        if is_adapter_param(name) or name.startswith("prompt_predictor."):
            continue
        digest.update(name.replace(".base.", ".").encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def save_multitask(path: str | Path, model: MultiTaskSam, foundation: str, info: dict) -> None:
    """Write the adapter tensors and heads of ``model`` with what is needed to check a load."""
    tensors = adapter_state_dict(model.base.sam.image_encoder)
    tensors.update({HEADS + k: v for k, v in model.heads.state_dict().items()})
    meta = {
        "kind": KIND,
        "adapter": to_dict(model.adapter),
        "adapter_format": ADAPTER_FORMAT,
        "class_names": list(model.class_names),
        "foundation": foundation,
        "foundation_fingerprint": foundation_fingerprint(model.base),
        "info": info,
    }
    save_tensors(path, tensors, meta)


def load_multitask(path: str | Path, base: RankSam) -> MultiTaskSam:
    """A :class:`MultiTaskSam` on ``base`` with the set stored in ``path``.

    Raises:
        ValueError: the set was trained on another foundation, names a task the heads do not
            have, or its tensors do not fit.
    """
    tensors, meta = load_tensors(path, KIND)
    fingerprint = foundation_fingerprint(base)
    if meta["foundation_fingerprint"] != fingerprint:
        raise ValueError(
            f"{path}: trained on foundation {meta['foundation']} (weights "
            f"{meta['foundation_fingerprint']}), not on {base.model_id} (weights {fingerprint})"
        )
    adapter = read_adapter_config(meta, path)
    if not isinstance(adapter, TensorLoraConfig):
        raise ValueError(f"{path}: holds a {adapter.kind} adapter, not tensor_lora")
    model = MultiTaskSam(base, adapter, tuple(meta["class_names"]))
    heads = {k[len(HEADS) :]: v for k, v in tensors.items() if k.startswith(HEADS)}
    adapters = {k: v for k, v in tensors.items() if not k.startswith(HEADS)}
    load_state_strict(model.heads, heads, f"{path} (heads)")
    expected = adapter_state_dict(base.sam.image_encoder)
    if set(expected) != set(adapters) or any(
        expected[k].shape != adapters[k].shape for k in expected
    ):
        raise ValueError(f"{path}: adapter tensors do not fit {base.model_id}")
    base.sam.image_encoder.load_state_dict(adapters, strict=False)  # adapter keys: checked
    return model.eval()


MULTITASK_FILE = "multitask.safetensors"


def load_task_model(model: str, tasks: tuple[str, ...]) -> MultiTaskSam:
    """The multi-task set shipped with ``model`` (a shipped name or model directory).

    A fresh copy of the foundation carries it, so the segmentation model's own adapters
    (e.g. gated ones on every encoder block) stay as they are.

    Raises:
        FileNotFoundError: the model has no multi-task set.
        ValueError: a requested task the set has no head for.
    """
    from ranksam_ros.modeling.registry import build_model, resolve_model_dir

    model_dir = resolve_model_dir(model)
    path = None if model_dir is None else model_dir / MULTITASK_FILE
    if path is None or not path.is_file():
        raise FileNotFoundError(f"model {model} has no multi-task set ({MULTITASK_FILE})")
    task_model = load_multitask(path, build_model(str(model_dir)))
    missing = sorted(set(tasks) - set(task_model.tasks))
    if missing:
        raise ValueError(
            f"model {model} has no task head for {missing}; its tasks: {list(task_model.tasks)}"
        )
    return task_model
