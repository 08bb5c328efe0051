"""Multi-task adapters and heads: targets, the model, the stage, files tied to a foundation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ranksam_ros.adapters.tensor_lora import TensorLoraConfig
from ranksam_ros.config import CAMVID_CLASSES
from ranksam_ros.config_loader import load_config
from ranksam_ros.data.task_targets import boundary_target, centre_targets, thing_instances
from ranksam_ros.modeling.multitask import MultiTaskSam
from ranksam_ros.modeling.registry import build_model, save_model
from ranksam_ros.modeling.task_io import foundation_fingerprint, load_multitask
from ranksam_ros.train.config import TrainConfig
from ranksam_ros.train.loop import Trainer

CONV_TAIL = TensorLoraConfig(target_modules=("block.3", "block.5"), layers=(1,), dropout=0.0)


def test_boundaries_follow_class_changes_and_skip_ignore():
    label = np.zeros((8, 8), np.uint8)
    label[2:6, 2:6] = 3
    label[0] = 11  # ignore
    edge = boundary_target(label, 11)
    assert edge[3, 1] == 1 and edge[3, 2] == 1 and edge[4, 4] == 0
    assert (edge[0] == -1).all() and edge[1, 0] == 0  # no boundary against ignore


def test_centres_sit_inside_instances_and_offsets_point_at_them():
    label = np.zeros((32, 32), np.uint8)
    label[4:12, 4:12] = 8  # a car
    label[20:30, 18:22] = 9  # a pedestrian
    instances, classes = thing_instances(label, (8, 9))
    assert classes == [8, 9] and instances.max() == 2
    heat, offsets, mask = centre_targets(instances, (8, 8), 4.0, sigma=1.0)
    peaks = np.argwhere(heat == 1.0)
    assert len(peaks) == 2
    for row, col in peaks:
        assert instances[int((row + 0.5) * 4), int((col + 0.5) * 4)] > 0
    rows, cols = np.nonzero(mask)
    targets = np.stack([cols + offsets[0, rows, cols], rows + offsets[1, rows, cols]], 1)
    assert np.abs(targets - np.round(targets)).max() <= 0.5  # every cell names a centre cell


def test_trunk_runs_once_and_tasks_differ(micro_model):
    base = build_model("micro-conv")
    model = MultiTaskSam(base, CONV_TAIL, CAMVID_CLASSES).eval()
    with torch.no_grad():
        for param in model.parameters():
            if param.requires_grad:
                param.add_(0.1 * torch.randn_like(param))
        out = model(torch.randn(2, 3, 64, 64))
    assert {k: tuple(v.shape) for k, v in out.items()} == {
        "semantic": (2, 11, 16, 16),
        "boundary": (2, 1, 16, 16),
        "centre": (2, 3, 16, 16),
    }
    trainable = {n.split(".")[0] for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"base", "heads"}
    assert all("tlora_" in n for n, p in model.base.named_parameters() if p.requires_grad)
    with pytest.raises(ValueError, match="must be the last encoder blocks"):
        MultiTaskSam(build_model("micro-conv"), TensorLoraConfig(layers=(0,)), CAMVID_CLASSES)
    with pytest.raises(ValueError, match="need the conv encoder"):
        MultiTaskSam(micro_model, CONV_TAIL, CAMVID_CLASSES)


def test_stage_trains_keeps_the_foundation_and_refuses_another(dataset_root, tmp_path):
    base_path = tmp_path / "base.safetensors"
    base = build_model("micro-conv")
    save_model(base_path, base)
    overrides = [
        "stage=multitask",
        f"model={base_path}",
        f"data.root={dataset_root}",
        f"out_dir={tmp_path / 'mt'}",
        "optim.steps=2",
        "optim.batch_size=2",
        "log_every=1",
        "adapter.kind=tensor_lora",
        "adapter.target_modules=[block.3,block.5]",
        "adapter.layers=[1]",
    ]
    trainer = Trainer(load_config(TrainConfig, None, overrides))
    path = trainer.train()
    logs = [json.loads(line) for line in (tmp_path / "mt" / "log.jsonl").read_text().splitlines()]
    assert all({"semantic_loss", "boundary_loss", "centre_loss"} <= set(e) for e in logs)
    # BatchNorm statistics and weights of the frozen foundation are untouched by training.
    assert foundation_fingerprint(trainer.model.base) == foundation_fingerprint(base)
    loaded = load_multitask(path, build_model(str(base_path)))
    assert loaded.tasks == ("semantic", "boundary", "centre")
    from ranksam_ros.config import DataConfig
    from ranksam_ros.data.folder import SegmentationFolder
    from ranksam_ros.eval.tasks import evaluate_tasks

    report = evaluate_tasks(loaded, SegmentationFolder(dataset_root / "val"), [0, 1], DataConfig())
    assert set(report["scores"]) == {"semantic", "boundary", "centre"}
    assert all(0.0 <= v <= 1.0 for v in report["scores"].values())
    with pytest.raises(ValueError, match="trained on foundation"):
        load_multitask(path, build_model("micro-conv"))


def test_task_scores_are_perfect_for_outputs_made_from_the_labels():
    from ranksam_ros.config import DataConfig
    from ranksam_ros.eval.tasks import TaskScores, delta_m
    from ranksam_ros.graph.preprocess import ResizeInfo

    label = np.zeros((64, 64), np.uint8)
    label[8:24, 8:40] = 8  # car
    label[40:60, 50:58] = 9  # pedestrian
    label[:, :4] = 11  # ignore
    geometry = ResizeInfo((64, 64), (64, 64), 64)
    semantic = np.where(np.arange(11)[:, None, None] == label[None], 10.0, -10.0)
    edge = boundary_target(label, 11)
    instances, _ = thing_instances(label, (2, 6, 8, 9, 10))
    heat, _, _ = centre_targets(instances, (64, 64), 1.0, sigma=1.0)
    outputs = {
        "semantic": semantic.astype(np.float32),
        "boundary": np.where(edge > 0.5, 10.0, -10.0)[None].astype(np.float32),
        "centre": np.stack([np.where(heat >= 1.0, 10.0, -10.0)] * 3).astype(np.float32),
    }
    scores = TaskScores(DataConfig())
    scores.add(outputs, label, geometry)
    result = scores.scores()
    assert result["boundary"] == pytest.approx(1.0) and result["centre"] == pytest.approx(1.0)
    assert result["semantic"] == pytest.approx(1.0)
    worse = {task: value / 2 for task, value in result.items()}
    assert delta_m(worse, result) == pytest.approx(-50.0)


def test_task_outputs_through_torch_and_onnxruntime_agree(tmp_path):
    from ranksam_ros.backends import create_backend
    from ranksam_ros.backends.onnx_backend import OnnxBackend
    from ranksam_ros.config import BackendConfig
    from ranksam_ros.deploy.export import export_model
    from ranksam_ros.modeling.task_io import MULTITASK_FILE, save_multitask

    model_dir = tmp_path / "model"
    model_dir.mkdir()
    base = build_model("micro-conv")
    save_model(model_dir / "model.safetensors", base)
    tasks = MultiTaskSam(build_model(str(model_dir)), CONV_TAIL, CAMVID_CLASSES)
    with torch.no_grad():
        for param in tasks.parameters():
            if param.requires_grad:
                param.add_(0.05 * torch.randn_like(param))
    save_multitask(model_dir / MULTITASK_FILE, tasks, str(model_dir), {})
    torch_backend = create_backend(
        BackendConfig(model=str(model_dir), tasks=("boundary", "centre"))
    )
    assert torch_backend.info.tasks == ("semantic", "boundary", "centre")
    export_model(str(model_dir), tmp_path / "export")
    ort = OnnxBackend(tmp_path / "export", tasks=("semantic", "centre"))
    image = np.random.default_rng(4).normal(size=(1, 3, 64, 64)).astype(np.float32)
    ours = ort.predict_tasks(image, ("semantic", "centre"))
    reference = torch_backend.predict_tasks(image, ("semantic", "centre"))
    for task in ("semantic", "centre"):
        np.testing.assert_allclose(ours[task], reference[task], atol=1e-4)
    np.testing.assert_allclose(ours["semantic"].sum(0), 1.0, atol=1e-5)
    assert 0 <= ours["centre"][0].min() and ours["centre"][0].max() <= 1
    with pytest.raises(ValueError, match="no task head for \\['depth'\\]"):
        create_backend(BackendConfig(model=str(model_dir), tasks=("depth",)))
    with pytest.raises(ValueError, match="no task output"):
        OnnxBackend(tmp_path / "export", tasks=("depth",))
    with pytest.raises(FileNotFoundError, match="no multi-task set"):
        create_backend(BackendConfig(model="micro-conv", tasks=("boundary",)))


def test_a_prompt_predictor_with_other_classes_than_the_semantic_head_fails_at_load(tmp_path):
    from ranksam_ros.modeling.prompt_predictor import build_prompt_predictor, save_prompt_predictor

    model = build_model("micro-conv")
    assert tuple(model.arch.semantic_classes) == CAMVID_CLASSES
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    save_model(model_dir / "model.safetensors", model)
    renamed = ("road", *CAMVID_CLASSES[1:])  # same count, one class renamed
    predictor = build_prompt_predictor(model.arch, renamed)
    save_prompt_predictor(model_dir / "prompt_predictor.safetensors", predictor)
    with pytest.raises(ValueError, match="differ from the semantic head's"):
        build_model(str(model_dir))
