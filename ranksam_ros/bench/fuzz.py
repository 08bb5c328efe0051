"""Malformed camera messages for fuzzing the node: every kind a broken driver or bag produces.

Each generated message is invalid in exactly one way the node must detect (and count) without
crashing: wrong encoding strings, step or size mismatches, truncated data, zero and huge
dimensions, corrupt or truncated JPEG/PNG, and compressed images that claim huge dimensions.
"""

from __future__ import annotations

import io
import string
import zlib
from collections.abc import Iterator

import numpy as np
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage, Image

# Truncations cut at least this many bytes: losing only the end marker (JPEG EOI, PNG IEND)
# or the zlib checksum leaves every pixel intact, and decoders rightly accept such files.
TRAILER_BYTES = 32
RAW_KINDS = ("encoding", "step", "truncated", "zero", "huge", "oversized_step")
COMPRESSED_KINDS = ("garbage", "truncated_jpeg", "truncated_png", "empty", "bomb")


def _encoding(rng: np.random.Generator) -> str:
    letters = string.ascii_lowercase + string.digits + "_"
    word = "".join(rng.choice(list(letters), size=int(rng.integers(1, 12))))
    return word if word not in ("rgb8", "bgr8", "rgba8", "bgra8", "mono8") else word + "x"


def bad_raw(kind: str, rng: np.random.Generator) -> Image:
    """One malformed ``sensor_msgs/Image`` of the given kind."""
    width, height = int(rng.integers(1, 64)), int(rng.integers(1, 64))
    if kind == "encoding":
        return Image(
            width=width,
            height=height,
            encoding=_encoding(rng),
            step=width * 3,
            data=bytes(width * height * 3),
        )
    if kind == "step":  # step shorter than a row
        return Image(
            width=width + 1,
            height=height,
            encoding="rgb8",
            step=width,
            data=bytes((width + 1) * height * 3),
        )
    if kind == "truncated":
        full = width * height * 3
        return Image(
            width=width,
            height=height,
            encoding="rgb8",
            step=width * 3,
            data=bytes(int(rng.integers(0, full))),
        )
    if kind == "zero":
        return Image(width=0, height=int(rng.integers(0, 3)), encoding="mono8", step=0, data=b"")
    if kind == "huge":
        side = int(rng.integers(20000, 2**31 - 1))
        return Image(width=side, height=side, encoding="mono8", step=side, data=bytes(16))
    if kind == "oversized_step":  # step so large that step * height overflows 32 bits
        return Image(width=width, height=height, encoding="rgb8", step=2**32 - 1, data=bytes(64))
    raise ValueError(f"unknown raw kind {kind!r}")


def _encoded(fmt: str, rng: np.random.Generator) -> bytes:
    pixels = rng.integers(0, 255, (24, 32, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    PILImage.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def bad_compressed(kind: str, rng: np.random.Generator) -> CompressedImage:
    """One malformed ``sensor_msgs/CompressedImage`` of the given kind."""
    if kind == "garbage":
        data = (
            b"\xff\xd8\xff"
            + rng.integers(0, 256, int(rng.integers(1, 200)), dtype=np.uint8).tobytes()
        )
        return CompressedImage(format="jpeg", data=data)
    if kind in ("truncated_jpeg", "truncated_png"):
        fmt = "JPEG" if kind == "truncated_jpeg" else "PNG"
        data = _encoded(fmt, rng)
        return CompressedImage(
            format=fmt.lower(), data=data[: int(rng.integers(1, len(data) - TRAILER_BYTES))]
        )
    if kind == "empty":
        return CompressedImage(format="jpeg", data=b"")
    if kind == "bomb":  # a valid PNG header announcing 60000 x 60000 pixels
        buffer = io.BytesIO()
        PILImage.new("L", (1, 1)).save(buffer, format="PNG")
        data = bytearray(buffer.getvalue())
        data[16:24] = (60000).to_bytes(4, "big") * 2
        data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")  # keep the header valid
        return CompressedImage(format="png", data=bytes(data))
    raise ValueError(f"unknown compressed kind {kind!r}")


def malformed_stream(count: int, compressed: bool, seed: int = 0) -> Iterator[tuple[str, object]]:
    """``count`` malformed messages ``(kind, msg)``, kinds cycling so each is well represented."""
    rng = np.random.default_rng(seed)
    kinds = COMPRESSED_KINDS if compressed else RAW_KINDS
    make = bad_compressed if compressed else bad_raw
    for index in range(count):
        kind = kinds[index % len(kinds)]
        yield kind, make(kind, rng)
