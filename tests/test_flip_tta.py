"""Flip test-time augmentation: prompt mirroring, equivariance, pipeline and eval wiring."""

from __future__ import annotations

import numpy as np
import pytest

from ranksam_ros.backends import create_backend
from ranksam_ros.backends.flip_tta import FlipTTABackend, mirror_prompts, with_tta
from ranksam_ros.backends.torch_backend import TorchBackend
from ranksam_ros.config import BackendConfig, DataConfig, PipelineConfig, PromptConfig
from ranksam_ros.eval.evaluate import evaluate
from ranksam_ros.eval.options import EvalOptions
from ranksam_ros.graph.prompts import boxes_to_prompts
from ranksam_ros.modeling.prompt_predictor import build_prompt_predictor
from ranksam_ros.node_config import NodeConfig
from ranksam_ros.pipeline.pipeline import Pipeline

SIZE = 64


def test_mirrored_boxes_keep_their_pixels_and_corner_order():
    coords, labels = boxes_to_prompts(np.array([[4.0, 5.0, 40.0, 30.0]]))
    mirrored = mirror_prompts(coords, labels, SIZE)
    # Columns 4..40 (inclusive) of a 64-wide input are columns 23..59 of its mirror.
    np.testing.assert_array_equal(mirrored.reshape(-1), [23.0, 5.0, 59.0, 30.0])
    np.testing.assert_array_equal(mirror_prompts(mirrored, labels, SIZE), coords)


def test_mirrored_points_flip_x_only():
    coords = np.array([[[0.0, 7.0], [63.0, 1.0]]], np.float32)
    labels = np.array([[1.0, 0.0]], np.float32)
    np.testing.assert_array_equal(mirror_prompts(coords, labels, SIZE), [[[63, 7], [0, 1]]])


def test_tta_is_mirror_equivariant_and_differs_from_one_view(micro_model):
    """TTA(image, p) == mirror(TTA(mirror(image), mirror(p))): both views enter once each."""
    plain = TorchBackend(micro_model)
    tta = FlipTTABackend(plain)
    image = np.random.default_rng(0).normal(size=(1, 3, SIZE, SIZE)).astype(np.float32)
    coords, labels = boxes_to_prompts(np.array([[4.0, 5.0, 40.0, 30.0], [10, 0, 63, 63]]))
    logits, iou = tta.decode(tta.encode(image), coords, labels, True)
    flipped = np.ascontiguousarray(image[..., ::-1])
    logits_f, iou_f = tta.decode(
        tta.encode(flipped), mirror_prompts(coords, labels, SIZE), labels, True
    )
    np.testing.assert_allclose(logits, logits_f[..., ::-1], atol=1e-4)
    np.testing.assert_allclose(iou, iou_f, atol=1e-5)
    single, _ = plain.decode(plain.encode(image), coords, labels, True)
    assert logits.shape == single.shape == (2, 3, 32, 32)
    assert np.abs(logits - single).max() > 1e-3
    assert tta.info.model_id == f"{plain.info.model_id}+flip"


def test_tta_refuses_foreign_encodings_and_unknown_modes(micro_model):
    plain = TorchBackend(micro_model)
    image = np.zeros((1, 3, SIZE, SIZE), np.float32)
    coords, labels = boxes_to_prompts(np.array([[4.0, 5.0, 40.0, 30.0]]))
    with pytest.raises(ValueError, match="mirror view"):
        FlipTTABackend(plain).decode(plain.encode(image), coords, labels, False)
    assert with_tta(plain, "none") is plain
    with pytest.raises(ValueError, match="unknown tta"):
        with_tta(plain, "rotate")
    with pytest.raises(ValueError, match="tta='rotate' is not one of none, flip"):
        BackendConfig(model="micro", tta="rotate")
    with pytest.raises(ValueError, match="tta"):
        NodeConfig(tta="rotate")


def test_create_backend_takes_a_backend_config():
    backend = create_backend(BackendConfig(model="micro", tta="flip"))
    assert isinstance(backend, FlipTTABackend)
    assert backend.info.model_id.endswith("+flip")
    node = NodeConfig(model="micro", adapter="none", threads=1, tta="flip")
    assert node.backend_config() == BackendConfig(model="micro", threads=1, tta="flip")


def test_promptless_pipeline_and_box_eval_run_with_tta(micro_model, frames_dir):
    from ranksam_ros.data.folder import read_rgb

    micro_model.prompt_predictor = build_prompt_predictor(micro_model.arch, ("a", "b", "c")).eval()
    backend = with_tta(TorchBackend(micro_model), "flip")
    cfg = PipelineConfig(prompts=PromptConfig(threshold=0.0, min_pred_iou=0.0, max_prompts=6))
    image = read_rgb(sorted((frames_dir / "images").iterdir())[0])
    result = Pipeline(backend, cfg)(image)
    assert result.semantic.shape == image.shape[:2] and result.prompts_decoded > 0
    abc = DataConfig(class_names=("a", "b", "c"), num_classes=3, thing_classes=())
    report = evaluate(EvalOptions(data=str(frames_dir), limit=1, tta="flip", dataset=abc), backend)
    assert report["tta"] == "flip" and report["model"].endswith("+flip")
    assert 0.0 <= report["miou"] <= 1.0 and report["segments"] > 2
