"""``build_model(name_or_path)``: presets, shipped models, our checkpoints and official files."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ranksam_ros.adapters.io import load_adapters
from ranksam_ros.checkpoint import (
    OFFICIAL_SUFFIXES,
    load_official_state_dict,
    load_state_strict,
    load_tensors,
    read_meta,
    save_tensors,
)
from ranksam_ros.config import SamArchConfig
from ranksam_ros.config_loader import from_dict
from ranksam_ros.modeling.build import (
    ARCH_PRESETS,
    arch_preset,
    arch_to_dict,
    build_sam,
    infer_official_arch,
)
from ranksam_ros.modeling.ranksam import SEMANTIC_OFFSETS, RankSam

MODELS_DIR = Path(__file__).resolve().parent.parent / "models"
MODEL_FILE = "model.safetensors"
MODEL_CARD = "model.json"
HEAD_NAMES = ("detail_head", "semantic_head")  # modules beside SAM in a model file
ADAPTER_DIR = "adapters"


def shipped_models() -> list[str]:
    """Names of the models stored inside the package (e.g. ``camvid-tiny``)."""
    if not MODELS_DIR.is_dir():
        return []
    return sorted(p.name for p in MODELS_DIR.iterdir() if (p / MODEL_FILE).is_file())


def resolve_model_dir(name_or_path: str) -> Path | None:
    """Directory of a shipped model name or a model directory path, else None."""
    if name_or_path in shipped_models():
        return MODELS_DIR / name_or_path
    path = Path(name_or_path)
    if path.is_dir():
        if not (path / MODEL_FILE).is_file():
            raise FileNotFoundError(f"{path} is a directory without {MODEL_FILE}")
        return path
    return None


def save_model(path: str | Path, model: RankSam, info: dict | None = None) -> None:
    """Write SAM's weights (adapters excluded) with the architecture to a safetensors file."""
    from ranksam_ros.adapters.inject import is_adapter_param

    state = {k: v for k, v in model.sam.state_dict().items() if not is_adapter_param(k)}
    if any(".base." in k for k in state):
        raise ValueError("save the base model before injecting adapters")
    for name, head in model.heads().items():
        state.update({f"{name}.{k}": v for k, v in head.state_dict().items()})
    save_tensors(path, state, {"kind": "sam", "arch": arch_to_dict(model.arch), "info": info or {}})


def _load_checkpoint_file(path: Path) -> RankSam:
    if path.suffix in OFFICIAL_SUFFIXES:
        state = load_official_state_dict(path)
        try:
            name = infer_official_arch(state)
        except ValueError as exc:
            raise ValueError(f"{path}: {exc}") from exc
        sam = build_sam(ARCH_PRESETS[name])
        load_state_strict(sam, state, str(path))
        return RankSam(sam, ARCH_PRESETS[name], f"{name}:{path.stem}")
    tensors, meta = load_tensors(path, "sam")
    arch = from_dict(SamArchConfig, meta["arch"], f"{path}: arch")
    sam = build_sam(arch)
    model = RankSam(sam, arch, path.stem)
    heads = model.heads()
    for name in HEAD_NAMES:
        prefix = f"{name}."
        part = {k[len(prefix) :]: tensors.pop(k) for k in list(tensors) if k.startswith(prefix)}
        if name in heads:
            load_state_strict(heads[name], part, f"{path} ({name})")
        elif part:
            raise ValueError(f"{path}: {name} weights in a checkpoint whose arch has no {name}")
    load_state_strict(sam, tensors, str(path))
    return model


def build_model(
    name_or_path: str,
    adapter: str | None = None,
    checkpoint: str | None = None,
) -> RankSam:
    """Build a ready-to-use model in eval mode.

    Args:
        name_or_path: An architecture preset (``vit_b``, ``vit_l``, ``vit_h``, ``tiny`` ...;
            random weights unless ``checkpoint`` is given), a shipped model (``camvid-tiny``),
            a model directory, one of our ``.safetensors`` checkpoints, or an official
            SAM ``.pth`` file (architecture inferred from its shapes).
        adapter: ``None``/``"none"``, an adapter name stored with the model
            (``gated``, ``lora``), or a path to an adapter file; ``+`` stacks an encoder
            set and a decoder set (``gated+pa_sam``).
        checkpoint: Official ``.pth`` weights for an architecture preset.

    Returns:
        The model; prompt predictor attached when the model directory has one.
    """
    model_dir = resolve_model_dir(name_or_path)
    if model_dir is not None:
        model = _load_checkpoint_file(model_dir / MODEL_FILE)
        model.model_id = model_dir.name
        model.calibration = read_calibration(model_dir)
        _check_offsets(model, model_dir / MODEL_CARD)
    elif name_or_path in ARCH_PRESETS:
        arch = arch_preset(name_or_path)
        sam = build_sam(arch)
        model = RankSam(sam, arch, name_or_path)
        if checkpoint is not None:
            state = load_official_state_dict(checkpoint)
            load_state_strict(sam, state, checkpoint)
            model.model_id = f"{name_or_path}:{Path(checkpoint).stem}"
    elif Path(name_or_path).suffix in (".safetensors", *OFFICIAL_SUFFIXES):
        model = _load_checkpoint_file(Path(name_or_path))
    else:
        raise ValueError(
            f"unknown model {name_or_path!r}: not a preset ({', '.join(ARCH_PRESETS)}), "
            f"a shipped model ({', '.join(shipped_models()) or 'none installed'}), "
            "a model directory or a checkpoint file"
        )
    if adapter not in (None, "none"):
        _attach_adapter(model, adapter, model_dir)
    _attach_prompt_predictor(model, model_dir)
    return model.eval()


CALIBRATED_KEYS = ("box_mask_threshold", SEMANTIC_OFFSETS)


def read_calibration(model_dir: Path) -> dict[str, float | tuple[float, ...]]:
    """Settings calibrated for a model directory's model (``model.json``).

    ``box_mask_threshold`` is a number; ``semantic_logit_offsets`` one number per class of the
    semantic head (see :meth:`RankSam.semantic_probs`).

    Raises:
        ValueError: the card is not JSON, or its ``calibration`` holds an unknown key or a
            value that is not a finite number (a list of them for the offsets).
    """
    card_path = model_dir / MODEL_CARD
    if not card_path.is_file():
        return {}
    try:
        card = json.loads(card_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{card_path}: not JSON ({exc})") from None
    calibration = (card.get("calibration") if isinstance(card, dict) else None) or {}
    if not isinstance(calibration, dict):
        raise ValueError(f"{card_path}: calibration must be an object of named settings")
    values = {}
    for key, value in calibration.items():
        if key == "source":  # how it was measured, for people
            continue
        if key not in CALIBRATED_KEYS:
            raise ValueError(f"{card_path}: calibration.{key} is not one of {CALIBRATED_KEYS}")
        if key == SEMANTIC_OFFSETS:
            if not isinstance(value, list) or not value or not all(_finite(v) for v in value):
                raise ValueError(
                    f"{card_path}: calibration.{key} must be a non-empty list of finite numbers"
                )
            values[key] = tuple(float(v) for v in value)
        elif _finite(value):
            values[key] = float(value)
        else:
            raise ValueError(f"{card_path}: calibration.{key} must be a finite number")
    return values


def _finite(value: object) -> bool:
    """A JSON number (not a bool) that is finite; huge integers overflow and are not."""
    if not isinstance(value, (int, float)) or isinstance(value, bool):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def _check_offsets(model: RankSam, card: Path) -> None:
    """The card's per-class offsets must match the semantic head's classes."""
    offsets = model.calibration.get(SEMANTIC_OFFSETS)
    if offsets is None:
        return
    classes = model.arch.semantic_classes
    if not classes:
        raise ValueError(f"{card}: calibration.{SEMANTIC_OFFSETS}: the model has no semantic head")
    if len(offsets) != len(classes):
        raise ValueError(
            f"{card}: calibration.{SEMANTIC_OFFSETS} has {len(offsets)} values but the model's "
            f"semantic head has {len(classes)} classes"
        )


def _attach_adapter(model: RankSam, spec: str, model_dir: Path | None) -> None:
    """Load the ``+``-joined adapter sets of ``spec``: at most one per part of SAM."""
    from ranksam_ros.adapters.io import read_adapter_config
    from ranksam_ros.adapters.registry import kind_of

    targets = {}
    for adapter in spec.split("+"):
        path = _adapter_path(adapter, model_dir)
        target = kind_of(read_adapter_config(read_meta(path), path)).target
        if target in targets:
            raise ValueError(f"adapters {spec!r}: two sets for the {target}")
        targets[target] = path
    configs = {target: load_adapters(path, model.sam) for target, path in targets.items()}
    model.model_id += "".join(f"+{path.stem}" for path in targets.values())
    # The encoder's set decides how export treats the encoder (merge, live gates).
    model.adapter_cfg = configs.get("image_encoder", next(iter(configs.values())))


def _adapter_path(adapter: str, model_dir: Path | None) -> Path:
    path = Path(adapter)
    if not path.is_file():
        if model_dir is None:
            raise FileNotFoundError(f"adapter file not found: {adapter}")
        path = model_dir / ADAPTER_DIR / f"{adapter}.safetensors"
        if not path.is_file():
            available = sorted(p.stem for p in (model_dir / ADAPTER_DIR).glob("*.safetensors"))
            raise FileNotFoundError(
                f"model {model_dir.name} has no adapter {adapter!r}; available: "
                f"{', '.join(available) or 'none'}, or give a file path"
            )
    return path


def _attach_prompt_predictor(model: RankSam, model_dir: Path | None) -> None:
    """Placeholder hook filled in by the prompt predictor module when a file is present."""
    if model_dir is None:
        return
    from ranksam_ros.modeling.prompt_predictor import load_prompt_predictor

    path = model_dir / "prompt_predictor.safetensors"
    if path.is_file():
        predictor = load_prompt_predictor(path, model.arch)
        semantic = tuple(model.arch.semantic_classes)
        if semantic and tuple(predictor.class_names) != semantic:
            raise ValueError(
                f"{path}: prompt predictor classes {list(predictor.class_names)} differ from "
                f"the semantic head's {list(semantic)}"
            )
        model.prompt_predictor = predictor
