"""Incoming camera frames: ``sensor_msgs/Image`` and ``CompressedImage`` to RGB numpy arrays.

Raw frames become views or one vectorised channel copy (a 480x360 frame in microseconds to
about 0.15 ms on 2 CPU cores); compressed ones are decoded by Pillow after their header's size
is checked. Every refusal is a :class:`BadImageError` whose message says why, which the node
counts and logs instead of crashing.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage, Image

MAX_SIDE = 8192  # larger frames are rejected before any copy or decode
CHANNELS = {"rgb8": 3, "bgr8": 3, "rgba8": 4, "bgra8": 4, "mono8": 1}
_RGB_ORDER = {"bgr8": (2, 1, 0), "rgba8": (0, 1, 2), "bgra8": (2, 1, 0), "mono8": (0, 0, 0)}
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


class BadImageError(ValueError):
    """An input image message that cannot be turned into an RGB frame (the reason says why)."""


def check_image_size(width: int, height: int) -> None:
    """Raise :class:`BadImageError` for a zero dimension or one above :data:`MAX_SIDE`."""
    if width <= 0 or height <= 0:
        raise BadImageError(f"image has a zero dimension ({width}x{height})")
    if width > MAX_SIDE or height > MAX_SIDE:
        raise BadImageError(f"image {width}x{height} exceeds the {MAX_SIDE}x{MAX_SIDE} limit")


def image_to_rgb(msg: Image) -> np.ndarray:
    """Raw ``sensor_msgs/Image`` -> RGB frame.

    Supports rgb8, bgr8, rgba8, bgra8 and mono8 (replicated to three channels). Row padding
    (``step`` larger than ``width * channels``) is skipped; ``is_bigendian`` does not matter for
    8-bit encodings. Alpha is dropped.

    Args:
        msg: The image message; ``msg.data`` holds ``step * height`` bytes.

    Returns:
        ``(H, W, 3)`` uint8, C-contiguous. For unpadded rgb8 it is a view of ``msg.data``
        (no copy), so it is read-only when ``msg.data`` is ``bytes``.

    Raises:
        BadImageError: Unknown encoding, zero or oversized dimensions, ``step`` too small, or
            fewer than ``step * height`` bytes of data.
    """
    encoding = msg.encoding.lower()
    if encoding not in CHANNELS:
        raise BadImageError(
            f"unsupported encoding {msg.encoding!r}; expected one of {', '.join(CHANNELS)}"
        )
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    check_image_size(width, height)
    channels = CHANNELS[encoding]
    row_bytes = width * channels
    if step < row_bytes:
        raise BadImageError(f"step {step} < width*channels = {width}*{channels} = {row_bytes}")
    needed, got = step * height, len(msg.data)
    if got == 0:
        raise BadImageError(f"image has no pixel data (step*height = {needed} bytes expected)")
    if got < needed:
        raise BadImageError(
            f"image data truncated: {got} bytes < step*height = {step}*{height} = {needed}"
            f" ({got // step} complete rows)"
        )
    rows = np.frombuffer(msg.data, np.uint8, count=needed).reshape(height, step)
    pixels = rows[:, :row_bytes].reshape(height, width, channels)
    if encoding == "rgb8":
        return np.ascontiguousarray(pixels)  # a view unless rows are padded
    return gather_channels(pixels, _RGB_ORDER[encoding])


def gather_channels(pixels: np.ndarray, order: tuple[int, int, int]) -> np.ndarray:
    """``(H, W, C)`` -> C-contiguous ``(H, W, 3)`` with channel ``i`` = ``pixels[..., order[i]]``.

    Three strided channel copies: numpy's fancy indexing or ``ascontiguousarray`` of a
    reversed view are several times slower for a 3- or 4-element last axis.
    """
    out = np.empty(pixels.shape[:2] + (3,), np.uint8)
    for channel, source in enumerate(order):
        out[..., channel] = pixels[..., source]
    return out


def _compressed_format(msg: CompressedImage, head: bytes) -> str:
    """The codec (JPEG or PNG) from the magic bytes; ``msg.format`` only sharpens errors."""
    declared = msg.format.lower()
    if head.startswith(_JPEG_MAGIC):
        return "JPEG"
    if head.startswith(_PNG_MAGIC):
        return "PNG"
    if "compresseddepth" in declared:
        raise BadImageError(f"compressed depth images are not supported (format {msg.format!r})")
    raise BadImageError(
        f"compressed data is neither JPEG nor PNG (format {msg.format!r}, first bytes {head!r})"
    )


def compressed_to_rgb(msg: CompressedImage) -> np.ndarray:
    """``sensor_msgs/CompressedImage`` (JPEG or PNG) -> RGB frame.

    The format comes from the data's magic bytes (``msg.format`` such as ``"rgb8; jpeg
    compressed bgr8"`` only names the codec; the decoded pixels are RGB either way). The header
    is read first and the size checked before the pixels are decoded, so a small file that
    claims a huge image (a decompression bomb) costs nothing.

    Args:
        msg: The compressed image message.

    Returns:
        ``(H, W, 3)`` uint8, C-contiguous and read-only (grey and palette images are expanded,
        alpha dropped).

    Raises:
        BadImageError: Empty, not JPEG/PNG, corrupt or truncated data, 16-bit or float
            images, or zero/oversized dimensions.
    """
    data = bytes(msg.data)
    if not data:
        raise BadImageError("compressed image has no data")
    fmt = _compressed_format(msg, data[:8])
    try:
        with PILImage.open(io.BytesIO(data), formats=[fmt]) as image:  # reads the header only
            check_image_size(*image.size)
            if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
                raise BadImageError(f"{image.mode} (16-bit or float) images are not colour frames")
            image.load()
            return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    except BadImageError:
        raise
    except PILImage.DecompressionBombError as exc:  # Pillow's own, larger limit
        raise BadImageError(f"{fmt} image is too large: {exc}") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise BadImageError(f"corrupt {fmt} data ({len(data)} bytes): {exc}") from exc
