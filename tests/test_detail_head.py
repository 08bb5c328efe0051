"""The detail head: neutral start, checkpoints, training on a fixed SAM, ONNX parity."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from ranksam_ros.backends.onnx_backend import OnnxBackend
from ranksam_ros.backends.torch_backend import TorchBackend
from ranksam_ros.config import TrainConfig
from ranksam_ros.config_loader import load_config
from ranksam_ros.deploy.export import export_model
from ranksam_ros.deploy.trt_check import check_export
from ranksam_ros.graph.prompts import boxes_to_prompts
from ranksam_ros.modeling.build import ARCH_PRESETS, build_sam
from ranksam_ros.modeling.checkpoint import load_tensors, save_tensors
from ranksam_ros.modeling.ranksam import RankSam
from ranksam_ros.modeling.registry import build_model, save_model
from ranksam_ros.train.loop import Trainer

BOXES = torch.tensor([[4.0, 4.0, 40.0, 30.0], [0.0, 10.0, 63.0, 50.0]])


def _with_head(plain: RankSam, perturb: bool) -> RankSam:
    """``plain`` with a detail head; ``perturb`` gives the head's zero-started layer weights."""
    arch = dataclasses.replace(plain.arch, detail_head=True)
    model = RankSam(build_sam(arch), arch, "micro-detail")
    model.sam.load_state_dict(plain.sam.state_dict())
    if perturb:
        with torch.no_grad():
            for param in model.detail_head.token_mlp[-1].parameters():
                param.normal_(0, 0.5)
    return model.eval()


@pytest.fixture
def detail_model(micro_model):
    torch.manual_seed(0)
    return _with_head(micro_model, perturb=True)


def test_new_head_reproduces_sam_masks(micro_model):
    model = _with_head(micro_model, perturb=False)
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        coarse, iou = micro_model.decode(micro_model.encode(image), boxes=BOXES)
        _, detail = model.encode_with_detail(image)
        ours, ours_iou = model.decode(model.encode(image), boxes=BOXES, detail=detail)
    assert detail.shape == (1, 4, 32, 32) and ours.shape[-1] == model.arch.mask_size == 32
    assert torch.equal(ours, coarse) and torch.equal(ours_iou, iou)


def test_trained_head_changes_masks_and_needs_detail(detail_model, micro_model):
    image = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        embedding = detail_model.encode(image)
        ours, _ = detail_model.decode(
            embedding, boxes=BOXES, detail=detail_model.encode_with_detail(image)[1]
        )
        coarse, _ = micro_model.decode(embedding, boxes=BOXES)
        with pytest.raises(ValueError, match="detail head"):
            detail_model.decode(embedding, boxes=BOXES)
    assert (ours - coarse).abs().max() > 1e-3


def test_checkpoint_keeps_the_head_and_plain_arch_refuses_it(tmp_path, detail_model):
    path = tmp_path / "detail.safetensors"
    save_model(path, detail_model)
    loaded = build_model(str(path))
    assert loaded.arch.detail_head and loaded.arch.mask_size == 32
    for name, value in detail_model.detail_head.state_dict().items():
        assert torch.equal(value, loaded.detail_head.state_dict()[name])
    tensors, meta = load_tensors(path, "sam")
    meta["arch"]["detail_head"] = False
    forged = tmp_path / "forged.safetensors"
    save_tensors(forged, tensors, meta)
    with pytest.raises(ValueError, match="no detail_head"):
        build_model(str(forged))


def test_training_from_a_plain_model_changes_only_the_head(
    dataset_root, tmp_path, micro_model, detail_model
):
    plain, with_head = tmp_path / "plain.safetensors", tmp_path / "detail.safetensors"
    save_model(plain, micro_model)
    save_model(with_head, _with_head(micro_model, perturb=False))
    overrides = [
        f"data.root={dataset_root}",
        f"out_dir={tmp_path / 'run'}",
        f"model={with_head}",
        f"init={plain}",
        "freeze=[image_encoder, prompt_encoder, mask_decoder]",
        "optim.steps=2",
        "optim.batch_size=2",
        "optim.warmup_steps=1",
        "optim.lr=0.01",
        "data.prompts_per_image=4",
        "loss.point_samples=256",
        "loss.iou_samples=64",
    ]
    path = Trainer(load_config(TrainConfig, None, overrides)).train()
    trained = build_model(str(path))
    before = micro_model.sam.state_dict()
    assert all(torch.equal(v, trained.sam.state_dict()[k]) for k, v in before.items())
    assert trained.detail_head.token_mlp[-1].weight.abs().sum() > 0


def test_onnx_export_carries_detail_and_matches_torch(tmp_path, detail_model):
    root = tmp_path / "detail-model"
    root.mkdir()
    save_model(root / "model.safetensors", detail_model)
    out = tmp_path / "export"
    export_model(str(root), out)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["graphs"]["encoder"]["outputs"][-1] == "detail"
    assert manifest["graphs"]["decoder"]["inputs"][-1] == "detail"
    assert manifest["mask_size"] == 32
    ours, reference = OnnxBackend(out, threads=2), TorchBackend(build_model(str(root)))
    image = np.random.default_rng(0).normal(size=(1, 3, 64, 64)).astype(np.float32)
    a, b = ours.encode(image), reference.encode(image)
    np.testing.assert_allclose(a.detail, b.detail, atol=1e-5)
    coords, labels = boxes_to_prompts(BOXES.numpy())
    (ma, ia), (mb, ib) = (
        ours.decode(a, coords, labels, False),
        reference.decode(b, coords, labels, False),
    )
    assert ma.shape == (2, 1, 32, 32)
    np.testing.assert_allclose(ma, mb, atol=1e-3)
    np.testing.assert_allclose(ia, ib, atol=1e-4)
    a.detail = None
    with pytest.raises(ValueError, match="per-image detail"):
        ours.decode(a, coords, labels, False)
    for version in ("8.6", "10"):
        report = check_export(out, version)
        assert report.ok, report.format()


def test_freezing_all_of_sam_without_a_head_is_refused(dataset_root, tmp_path):
    overrides = [
        f"data.root={dataset_root}",
        f"out_dir={tmp_path}",
        "model=micro",
        "freeze=[image_encoder, prompt_encoder, mask_decoder]",
    ]
    with pytest.raises(ValueError, match="nothing to train"):
        Trainer(load_config(TrainConfig, None, overrides))


def test_official_presets_have_no_detail_head():
    assert not any(ARCH_PRESETS[name].detail_head for name in ("vit_b", "vit_l", "vit_h"))
