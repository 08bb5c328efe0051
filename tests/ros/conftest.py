"""Fixtures for the ROS 2 tests: a private rclpy context and a hand-made segmentation result."""

from __future__ import annotations

import os

import numpy as np
import pytest

from ranksam_ros.pipeline.postprocess import paint_labels
from ranksam_ros.pipeline.result import Instance, Segmentation

# Humble's generated message setters always type-check every field; Jazzy's only with this
# variable. Turning it on makes a float/int/array type slip fail here as it would on Humble.
# It is read when a message module is first imported, i.e. after this conftest.
os.environ.setdefault("ROS_PYTHON_CHECK_FIELDS", "1")

HEIGHT, WIDTH = 60, 80


def _instance(index: int, mask: np.ndarray, prompt_xy: tuple[float, float]) -> Instance:
    ys, xs = np.nonzero(mask)
    return Instance(
        instance_id=index,
        class_id=index % 3 - 1,  # -1, 0, 1, ...
        class_name="" if index % 3 == 0 else f"class{index % 3 - 1}",
        score=1.0 - 0.1 * index,
        predicted_iou=0.9 - 0.05 * index,
        box=(int(xs.min()), int(ys.min()), int(xs.max()), int(ys.max())),
        area=int(mask.sum()),
        mask=mask,
        prompt_xy=prompt_xy,
        prompt_score=0.5 + 0.05 * index,
    )


def make_masks() -> list[np.ndarray]:
    """Overlapping masks covering the awkward cases of an ROI-cropped RLE."""
    rng = np.random.default_rng(7)
    yy, xx = np.mgrid[:HEIGHT, :WIDTH]
    rectangle = np.zeros((HEIGHT, WIDTH), bool)
    rectangle[10:30, 5:25] = True  # the ROI starts with foreground: counts begin with 0
    ring = ((yy - 40) ** 2 + (xx - 50) ** 2 <= 144) & ((yy - 40) ** 2 + (xx - 50) ** 2 > 16)
    speckle = (rng.random((HEIGHT, WIDTH)) > 0.6) & (xx >= 60)  # touches right/bottom borders
    corner = np.zeros((HEIGHT, WIDTH), bool)
    corner[0, 0] = True  # a 1x1 ROI
    everything = np.ones((HEIGHT, WIDTH), bool)
    return [rectangle, ring, speckle, corner, everything]


@pytest.fixture
def segmentation() -> Segmentation:
    """A result with five overlapping instances, sorted by score like the pipeline's."""
    masks = make_masks()
    prompts = [(14.0, 19.0), (50.0, 28.0), (70.0, 30.0), (0.0, 0.0), (40.0, 30.0)]
    seg = Segmentation.empty((HEIGHT, WIDTH))
    seg.instances = [_instance(i + 1, m, p) for i, (m, p) in enumerate(zip(masks, prompts))]
    scores = np.asarray([inst.score for inst in seg.instances])
    ids = np.arange(1, len(masks) + 1)
    seg.instance_ids = paint_labels(np.stack(masks), scores, ids, 0, np.uint16)
    seg.prompts_xy = np.asarray(prompts)
    seg.candidates = 9
    seg.timings_ms = {"preprocess": 1.0, "encoder": 2.0, "prompt_predictor": 0.25, "prompts": 0.5}
    seg.timings_ms.update({"decoder": 3.0, "postprocess": 4.0})
    return seg


@pytest.fixture
def ros_context():
    """An initialised rclpy context of its own, shut down after the test."""
    rclpy = pytest.importorskip("rclpy")
    from rclpy.context import Context

    context = Context()
    rclpy.init(context=context)
    yield context
    context.try_shutdown()


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, make_micro_model):
    """A micro model directory (random weights + prompt predictor) for node tests."""
    pytest.importorskip("rclpy")
    from node_harness import make_model_dir

    return make_model_dir(tmp_path_factory, make_micro_model)


@pytest.fixture
def harness_factory(ros_context, model_dir):
    """Start RankSamNode instances (with a peer node) that are torn down after the test."""
    from node_harness import harness_factory_impl

    yield from harness_factory_impl(ros_context, model_dir)
