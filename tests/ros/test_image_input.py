"""Incoming camera frames (raw and compressed) to RGB arrays, including every bad-input path."""

from __future__ import annotations

import array
import io
import struct
import zlib

import numpy as np
import pytest

pytest.importorskip("rclpy")

from sensor_msgs.msg import CompressedImage, Image  # noqa: E402

from ranksam_ros.ros.image_input import (  # noqa: E402
    MAX_SIDE,
    BadImageError,
    compressed_to_rgb,
    image_to_rgb,
)

pytestmark = pytest.mark.ros


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
