"""Conversions between ROS messages and arrays, including every bad-input path."""

from __future__ import annotations

import array
import io
import math
import struct
import zlib

import numpy as np
import pytest

pytest.importorskip("rclpy")
pytest.importorskip("ranksam_msgs.msg")

from builtin_interfaces.msg import Time  # noqa: E402
from ranksam_msgs.msg import Prompt, PromptArray, SegmentationMasks  # noqa: E402
from rclpy.serialization import deserialize_message, serialize_message  # noqa: E402
from sensor_msgs.msg import CompressedImage, Image  # noqa: E402
from std_msgs.msg import Header  # noqa: E402

from ranksam_ros.pipeline.pipeline import PromptSet  # noqa: E402
from ranksam_ros.ros.conversions import (  # noqa: E402
    MAX_SIDE,
    BadImageError,
    compressed_to_rgb,
    image_to_rgb,
    label_image,
    msg_instance_mask,
    panoptic_image,
    prompts_from_msg,
    rgb_to_image,
    segmentation_to_msg,
)

pytestmark = pytest.mark.ros

HEADER = Header(stamp=Time(sec=1712, nanosec=345678), frame_id="camera_optical")


def _rgb(height: int = 36, width: int = 48, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _image(pixels: np.ndarray, encoding: str, padding: int = 0, **fields) -> Image:
    """A raw image message from ``(H, W, C)`` bytes, each row padded with ``padding`` bytes."""
    height, width = pixels.shape[:2]
    rows = pixels.reshape(height, -1)
    padded = np.concatenate([rows, np.full((height, padding), 0xAB, np.uint8)], axis=1)
    msg = Image(height=height, width=width, encoding=encoding, step=padded.shape[1])
    for name, value in fields.items():
        setattr(msg, name, value)
    msg.data = array.array("B", padded.tobytes())
    return msg


def _compressed(data: bytes, fmt: str) -> CompressedImage:
    msg = CompressedImage(format=fmt)
    msg.data = array.array("B", data)
    return msg


def _encode(image: np.ndarray, fmt: str, mode: str | None = None, **options) -> bytes:
    from PIL import Image as PILImage

    buffer = io.BytesIO()
    PILImage.fromarray(image, mode=mode).save(buffer, format=fmt, **options)
    return buffer.getvalue()


# --- raw images -------------------------------------------------------------------------------


@pytest.mark.parametrize("padding", [0, 5])
@pytest.mark.parametrize(
    "encoding,make",
    [
        ("rgb8", lambda rgb: rgb),
        ("bgr8", lambda rgb: rgb[..., ::-1]),
        ("rgba8", lambda rgb: np.dstack([rgb, np.full(rgb.shape[:2], 7, np.uint8)])),
        ("bgra8", lambda rgb: np.dstack([rgb[..., ::-1], np.full(rgb.shape[:2], 9, np.uint8)])),
    ],
)
def test_image_to_rgb_colour(encoding, make, padding):
    rgb = _rgb()
    out = image_to_rgb(_image(make(rgb), encoding, padding))
    assert out.dtype == np.uint8 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, rgb)


@pytest.mark.parametrize("padding", [0, 3])
def test_image_to_rgb_mono_replicates(padding):
    grey = _rgb()[..., :1]
    out = image_to_rgb(_image(grey, "mono8", padding))
    assert out.shape == (36, 48, 3)
    for channel in range(3):
        np.testing.assert_array_equal(out[..., channel], grey[..., 0])


def test_image_to_rgb_ignores_endianness_and_extra_bytes():
    rgb = _rgb()
    msg = _image(rgb, "rgb8", is_bigendian=1)
    msg.data.extend(b"trailing")
    np.testing.assert_array_equal(image_to_rgb(msg), rgb)


def test_image_to_rgb_unpadded_rgb8_is_a_view():
    msg = _image(_rgb(), "rgb8")
    out = image_to_rgb(msg)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8))


@pytest.mark.parametrize(
    "change,reason",
    [
        ({"encoding": "16UC1"}, r"unsupported encoding '16UC1'.*rgb8"),
        ({"encoding": "yuv422"}, r"unsupported encoding"),
        ({"encoding": ""}, r"unsupported encoding ''"),
        ({"width": 0}, r"zero dimension \(0x36\)"),
        ({"height": 0}, r"zero dimension \(48x0\)"),
        ({"width": MAX_SIDE + 1}, rf"{MAX_SIDE + 1}x36 exceeds the {MAX_SIDE}x{MAX_SIDE} limit"),
        ({"height": 100_000}, r"exceeds the .* limit"),
        ({"step": 48 * 3 - 1}, r"step 143 < width\*channels = 48\*3 = 144"),
        ({"step": 0}, r"step 0 < width\*channels"),
        ({"data": array.array("B")}, r"no pixel data \(step\*height = 5184 bytes expected\)"),
        ({"data": array.array("B", bytes(5183))}, r"truncated: 5183 bytes < .* = 5184 \(35 comp"),
        ({"step": 200}, r"truncated: 5184 bytes < step\*height = 200\*36 = 7200"),
    ],
)
def test_image_to_rgb_rejects(change, reason):
    msg = _image(_rgb(), "rgb8")
    for name, value in change.items():
        setattr(msg, name, value)
    with pytest.raises(BadImageError, match=reason):
        image_to_rgb(msg)


@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8", "mono8"])
def test_camera_sized_frames_match_a_plain_conversion(encoding):
    """The strided channel copies give what plain indexing gives, as one contiguous array."""
    channels = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}[encoding]
    pixels = np.random.default_rng(1).integers(0, 256, (360, 480, channels), dtype=np.uint8)
    order = {"rgb8": [0, 1, 2], "bgr8": [2, 1, 0], "rgba8": [0, 1, 2], "bgra8": [2, 1, 0]}
    expected = pixels[..., order.get(encoding, [0, 0, 0])]
    msg = _image(pixels, encoding)
    out = image_to_rgb(msg)
    np.testing.assert_array_equal(out, expected)
    assert out.flags.c_contiguous and out.shape == (360, 480, 3)
    assert np.shares_memory(out, np.frombuffer(msg.data, np.uint8)) == (encoding == "rgb8")


# --- compressed images ------------------------------------------------------------------------


def test_png_is_lossless():
    rgb = _rgb()
    np.testing.assert_array_equal(compressed_to_rgb(_compressed(_encode(rgb, "PNG"), "png")), rgb)


def test_jpeg_decodes_close_to_the_source():
    smooth = np.broadcast_to(np.linspace(0, 255, 48, dtype=np.uint8)[None, :, None], (36, 48, 3))
    msg = _compressed(_encode(np.ascontiguousarray(smooth), "JPEG", quality=95), "rgb8; jpeg")
    out = compressed_to_rgb(msg)
    assert out.shape == (36, 48, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - smooth).mean() < 3


def test_compressed_format_comes_from_the_magic_bytes():
    rgb = _rgb()
    wrongly_labelled = _compressed(_encode(rgb, "PNG"), "bgr8; jpeg compressed bgr8")
    np.testing.assert_array_equal(compressed_to_rgb(wrongly_labelled), rgb)


def test_compressed_grey_palette_and_alpha_become_rgb():
    rgb = _rgb()
    grey = compressed_to_rgb(_compressed(_encode(rgb[..., 0], "PNG", mode="L"), "png"))
    np.testing.assert_array_equal(grey, np.repeat(rgb[..., :1], 3, axis=2))
    rgba = np.dstack([rgb, np.full(rgb.shape[:2], 3, np.uint8)])
    np.testing.assert_array_equal(compressed_to_rgb(_compressed(_encode(rgba, "PNG"), "png")), rgb)
    from PIL import Image as PILImage

    palette = PILImage.fromarray(rgb).quantize(16)
    buffer = io.BytesIO()
    palette.save(buffer, format="PNG")
    out = compressed_to_rgb(_compressed(buffer.getvalue(), "png"))
    np.testing.assert_array_equal(out, np.asarray(palette.convert("RGB")))


def _png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG that claims ``width x height`` but holds only a few bytes of pixels."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = zlib.crc32(kind + body)
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes(64))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "data,fmt,reason",
    [
        (b"", "jpeg", r"no data"),
        (b"GIF89a" + bytes(30), "gif", r"neither JPEG nor PNG \(format 'gif'"),
        (bytes(12) + b"\x89PNG\r\n\x1a\n", "16UC1; compressedDepth png", r"compressed depth"),
        (_png_claiming(9000, 10), "png", r"9000x10 exceeds the 8192x8192 limit"),
        (_png_claiming(100_000, 100_000), "png", r"exceeds|too large"),
        (_png_claiming(0, 10), "png", r"corrupt PNG|zero dimension"),
        (_png_claiming(40, 30), "png", r"corrupt PNG data"),
        (b"\xff\xd8\xff\xe0" + bytes(40), "jpeg", r"corrupt JPEG data"),
    ],
    ids=["empty", "gif", "depth", "wide", "bomb", "zero", "short-png", "short-jpeg"],
)
def test_compressed_to_rgb_rejects(data, fmt, reason):
    # The reasons are the header checks': a bomb is refused before anything is decoded.
    with pytest.raises(BadImageError, match=reason):
        compressed_to_rgb(_compressed(data, fmt))


def test_truncated_compressed_data_is_rejected():
    rgb = _rgb(120, 160)
    for fmt in ("JPEG", "PNG"):
        data = _encode(rgb, fmt)
        with pytest.raises(BadImageError, match=f"corrupt {fmt} data"):
            compressed_to_rgb(_compressed(data[: len(data) // 2], fmt.lower()))


def test_sixteen_bit_png_is_rejected():
    depth = np.arange(36 * 48, dtype=np.uint16).reshape(36, 48)
    with pytest.raises(BadImageError, match="16-bit or float"):
        compressed_to_rgb(_compressed(_encode(depth, "PNG"), "png"))


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


@pytest.mark.parametrize("compressed", [False, True])
def test_every_generated_malformed_message_is_rejected(compressed):
    # The soak's pass criteria assume each fuzz message is invalid; a truncation that only cut
    # a PNG's IEND chunk once decoded fine (rightly) and was processed as a frame.
    from ranksam_ros.bench.fuzz import malformed_stream

    convert = compressed_to_rgb if compressed else image_to_rgb
    for kind, msg in malformed_stream(1500, compressed, seed=7):
        with pytest.raises(BadImageError):
            convert(msg)
            pytest.fail(f"{kind} message was accepted")


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
