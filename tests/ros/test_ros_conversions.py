"""Results and prompts as ROS messages and back, including every bad-input path."""

from __future__ import annotations

import array
import math

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("ranksam_msgs.msg")

from builtin_interfaces.msg import Time  # noqa: E402
from ranksam_msgs.msg import Prompt, PromptArray, SegmentationMasks  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from ranksam_ros.pipeline.pipeline import PromptSet  # noqa: E402
from ranksam_ros.ros.conversions import (  # noqa: E402
    label_image,
    msg_instance_mask,
    panoptic_image,
    prompts_from_msg,
    rgb_to_image,
    segmentation_to_msg,
)
from ranksam_ros.ros.image_input import image_to_rgb  # noqa: E402

pytestmark = pytest.mark.ros

HEADER = Header(stamp=Time(sec=1712, nanosec=345678), frame_id="camera_optical")


def _rgb(height: int = 36, width: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


# --- outgoing images ---------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8"])
def test_rgb_to_image_round_trip(encoding):
    rgb = _rgb()
    msg = rgb_to_image(rgb, HEADER, encoding)
    assert (msg.encoding, msg.width, msg.height, msg.step) == (encoding, 48, 36, 144)
    assert msg.header == HEADER
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def test_rgb_to_image_rejects_bad_input():
    with pytest.raises(ValueError, match="expected"):
        rgb_to_image(np.zeros((4, 4), np.uint8), HEADER)
    with pytest.raises(ValueError, match="rgb8 or bgr8"):
        rgb_to_image(_rgb(), HEADER, "mono8")


def test_label_images():
    ids = np.random.default_rng(1).integers(0, 65536, (36, 48)).astype(np.uint16)
    msg = label_image(ids, HEADER)
    assert (msg.encoding, msg.step, msg.is_bigendian, msg.header) == ("mono16", 96, 0, HEADER)
    np.testing.assert_array_equal(np.frombuffer(msg.data, "<u2").reshape(36, 48), ids)
    classes = (ids % 256).astype(np.uint8)
    msg8 = label_image(classes, HEADER)
    assert (msg8.encoding, msg8.step) == ("mono8", 48)
    np.testing.assert_array_equal(np.frombuffer(msg8.data, np.uint8).reshape(36, 48), classes)
    with pytest.raises(ValueError, match="uint8 or uint16"):
        label_image(ids.astype(np.int32), HEADER)


def test_panoptic_image_keeps_class_and_instance():
    rng = np.random.default_rng(2)
    classes, ids = rng.integers(0, 11, (36, 48)), rng.integers(0, 40, (36, 48))
    panoptic = (classes * 1000 + ids).astype(np.int32)
    msg = panoptic_image(panoptic, HEADER)
    assert (msg.encoding, msg.step, msg.is_bigendian) == ("32SC1", 4 * 48, 0)
    back = np.frombuffer(msg.data, "<i4").reshape(36, 48)
    np.testing.assert_array_equal(back // 1000, classes)
    np.testing.assert_array_equal(back % 1000, ids)
    with pytest.raises(ValueError, match="int32"):
        panoptic_image(panoptic.astype(np.int64), HEADER)


# --- segmentation results ---------------------------------------------------------------------


def _to_msg(seg, **kwargs) -> SegmentationMasks:
    args = {"model_id": "micro@torch-fp32", "prompt_source": 0, "timing": {}, "frames_dropped": 3}
    args.update(kwargs)
    return segmentation_to_msg(seg, HEADER, **args)


def test_segmentation_rle_round_trip_is_exact(segmentation):
    msg = deserialize_message(serialize_message(_to_msg(segmentation)), SegmentationMasks)
    assert msg.header == HEADER
    assert (msg.source_width, msg.source_height, msg.mask_width, msg.mask_height) == (80, 60) * 2
    assert [inst.instance_id for inst in msg.instances] == [1, 2, 3, 4, 5]
    for inst, expected in zip(msg.instances, segmentation.instances):
        mask = msg_instance_mask(inst, msg.mask_height, msg.mask_width)
        np.testing.assert_array_equal(mask, expected.mask)
        x0, y0, x1, y1 = expected.box
        roi = inst.roi
        assert (roi.x_offset, roi.y_offset, roi.width, roi.height) == (
            x0,
            y0,
            x1 - x0 + 1,
            y1 - y0 + 1,
        )
        assert sum(inst.rle_counts) == roi.width * roi.height
        assert inst.area == expected.area
        assert (inst.class_id, inst.class_name) == (expected.class_id, expected.class_name)
        assert inst.score == pytest.approx(expected.score)
        assert inst.predicted_iou == pytest.approx(expected.predicted_iou)
        assert (inst.prompt.type, inst.prompt.x, inst.prompt.y) == (
            Prompt.POINT,
            *expected.prompt_xy,
        )
        assert inst.prompt.score == pytest.approx(expected.prompt_score)


def test_rle_is_row_major_and_starts_with_background(segmentation):
    msg = _to_msg(segmentation)
    rectangle, _, _, corner, everything = msg.instances
    assert list(rectangle.rle_counts) == [0, 20 * 20]  # ROI fully foreground
    assert list(corner.rle_counts) == [0, 1]
    assert list(everything.rle_counts) == [0, 80 * 60]
    ring = msg.instances[1]
    first_row = segmentation.instances[1].mask[ring.roi.y_offset]
    x0 = ring.roi.x_offset
    assert ring.rle_counts[0] == int(np.argmax(first_row[x0:]))  # background run along the row


def test_segmentation_metadata(segmentation):
    timing = {"conversion_ms": 0.5, "total": 20.0}
    msg = _to_msg(segmentation, prompt_source=SegmentationMasks.PROMPT_HYBRID, timing=timing)
    assert (msg.model_id, msg.prompt_source, msg.frames_dropped) == ("micro@torch-fp32", 2, 3)
    assert (msg.prompts_decoded, msg.prompt_candidates) == (5, 9)
    assert math.isnan(msg.mean_active_rank)
    t = msg.timing
    assert (t.conversion_ms, t.preprocess_ms, t.encoder_ms, t.prompt_ms) == (0.5, 1.0, 2.0, 0.75)
    assert (t.decoder_ms, t.postprocess_ms, t.total_ms) == (3.0, 4.0, 20.0)
    assert 0.0 < t.message_ms < 1000.0
    segmentation.active_rank = 5.5
    assert _to_msg(segmentation, timing={"message": 1.5}).timing.message_ms == 1.5
    assert _to_msg(segmentation).mean_active_rank == 5.5


def test_empty_segmentation_gives_an_empty_message():
    from ranksam_ros.pipeline.result import Segmentation

    msg = _to_msg(Segmentation.empty((10, 20)))
    assert msg.instances == [] and (msg.source_width, msg.source_height) == (20, 10)


def test_external_prompts_are_echoed(segmentation):
    box = Prompt(type=Prompt.BOX, prompt_id="cup", class_id=4, score=1.0)
    box.box = np.asarray([40.0, 18.0, 60.0, 38.0], np.float32)  # centre (50, 28): the ring
    point = Prompt(type=Prompt.POINT, prompt_id="door", x=14.0, y=19.0, class_id=2, score=1.0)
    # The pipeline records which given prompt made an instance (points first, then boxes).
    first, second = segmentation.instances[:2]
    first.prompt_index, first.prompt_given = 0, True
    second.prompt_index, second.prompt_given = 1, True
    msg = _to_msg(segmentation, prompts=PromptArray(header=HEADER, prompts=[point, box]))
    assert [inst.prompt.prompt_id for inst in msg.instances[:3]] == ["door", "cup", ""]
    assert list(msg.instances[1].prompt.box) == [40.0, 18.0, 60.0, 38.0]


def test_instance_mask_rejects_inconsistent_messages(segmentation):
    inst = _to_msg(segmentation).instances[0]
    with pytest.raises(ValueError, match="leaves the 20x20 mask grid"):
        msg_instance_mask(inst, 20, 20)
    inst.rle_counts = array.array("I", [0, 5])
    with pytest.raises(ValueError, match="RLE counts sum to 5"):
        msg_instance_mask(inst, 60, 80)
    inst.roi.width = 0
    with pytest.raises(ValueError, match="empty roi"):
        msg_instance_mask(inst, 60, 80)
    inst.rle_counts = array.array("I")
    assert not msg_instance_mask(inst, 60, 80).any()


# --- prompts ----------------------------------------------------------------------------------


def _prompt(kind: int, **fields) -> Prompt:
    prompt = Prompt(type=kind, class_id=fields.pop("class_id", -1))
    if "box" in fields:
        prompt.box = np.asarray(fields.pop("box"), np.float32)
    for name, value in fields.items():
        setattr(prompt, name, value)
    return prompt


def test_prompts_from_msg_orders_points_then_boxes():
    msg = PromptArray(header=HEADER)
    msg.prompts = [
        _prompt(Prompt.BOX, box=[1.0, 2.0, 30.0, 40.0], class_id=7),
        _prompt(Prompt.POINT, x=5.5, y=6.5),
        _prompt(Prompt.POINT, x=7.0, y=8.0, class_id=2),
    ]
    points, boxes, classes = prompts_from_msg(msg)
    np.testing.assert_array_equal(points, [[5.5, 6.5], [7.0, 8.0]])
    np.testing.assert_array_equal(boxes, [[1.0, 2.0, 30.0, 40.0]])
    np.testing.assert_array_equal(classes, [-1, 2, 7])
    prompt_set = PromptSet(*prompts_from_msg(msg))
    assert prompt_set.points.shape == (2, 2) and prompt_set.boxes.shape == (1, 4)


def test_prompts_from_empty_msg():
    points, boxes, classes = prompts_from_msg(PromptArray())
    assert (points.shape, boxes.shape, classes.shape) == ((0, 2), (0, 4), (0,))


@pytest.mark.parametrize(
    "prompt,reason",
    [
        (_prompt(7), r"prompt 0: unknown type 7"),
        (_prompt(Prompt.BOX, box=[10.0, 0.0, 5.0, 5.0]), r"x1 < x0"),
        (_prompt(Prompt.POINT, x=math.nan, y=1.0), r"finite"),
        (_prompt(Prompt.BOX, box=[0.0, 0.0, math.inf, 5.0]), r"finite"),
    ],
)
def test_prompts_from_msg_rejects(prompt, reason):
    with pytest.raises(ValueError, match=reason):
        prompts_from_msg(PromptArray(prompts=[prompt]))


def test_task_images_keep_source_size_and_scale_offsets_to_source_pixels():
    from ranksam_ros.graph.preprocess import ResizeInfo
    from ranksam_ros.ros.conversions import task_image

    geometry = ResizeInfo((36, 48), (48, 64), 64)  # source 36x48 -> input 48x64 padded to 64
    values = np.zeros((3, 16, 16), np.float32)
    values[0] = 0.25  # centre probability
    values[1] = 2.0  # 2 cells of 4 input pixels: 8 input px, 6 source px (input = 4/3 source)
    values[2] = -1.0
    msg = task_image("centre", values, geometry, HEADER)
    assert (msg.encoding, msg.width, msg.height, msg.step) == ("32FC3", 48, 36, 48 * 12)
    pixels = np.frombuffer(msg.data, "<f4").reshape(36, 48, 3)
    np.testing.assert_allclose(pixels[..., 0], 0.25, atol=1e-5)
    np.testing.assert_allclose(pixels[..., 1], 6.0, atol=1e-4)
    np.testing.assert_allclose(pixels[..., 2], -3.0, atol=1e-4)
    classes = np.zeros((11, 16, 16), np.float32)
    classes[7] = 1.0
    semantic = task_image("semantic", classes, geometry, HEADER)
    assert semantic.encoding == "mono8" and set(np.frombuffer(semantic.data, np.uint8)) == {7}
    boundary = task_image("boundary", values[:1], geometry, HEADER)
    assert boundary.encoding == "32FC1" and boundary.step == 48 * 4
