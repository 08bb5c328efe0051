"""Header stamps inside raw CDR buffers, read and rewritten without deserialising.

Every message whose first field is a ``std_msgs/Header`` (``Image``, ``CompressedImage``,
``SegmentationMasks``) starts, after the 4-byte encapsulation header, with ``header.stamp``:
``sec`` (int32) at bytes 4..7 and ``nanosec`` (uint32) at bytes 8..11, in the byte order the
encapsulation names. ros2_benchmark keys its monitor on the same bytes.

The replay benchmark gives every frame it sends a unique stamp this way, so outputs match
inputs by stamp and bags without stamps (all zero) still work.
"""

from __future__ import annotations

import struct

# Encapsulation kind (bytes 0..1) -> struct byte order; plain CDR and XCDR2 only: parameter
# lists and delimited encodings put extra words before the first field.
_BYTE_ORDER = {
    b"\x00\x00": ">",  # CDR_BE
    b"\x00\x01": "<",  # CDR_LE
    b"\x00\x06": ">",  # CDR2_BE
    b"\x00\x07": "<",  # CDR2_LE
}
STAMP_END = 12  # bytes 0..11: encapsulation, sec, nanosec


class CdrError(ValueError):
    """A buffer that does not hold a header-first message in a supported CDR encoding."""


def byte_order(raw: bytes | bytearray | memoryview) -> str:
    """``"<"`` or ``">"`` from the encapsulation header of a serialised message.

    Raises:
        CdrError: The buffer is shorter than a stamp or uses another encapsulation.
    """
    if len(raw) < STAMP_END:
        raise CdrError(f"CDR buffer of {len(raw)} bytes is too short for a header stamp")
    kind = bytes(raw[:2])
    if kind not in _BYTE_ORDER:
        raise CdrError(
            f"unsupported CDR encapsulation {kind.hex()} (expected plain CDR or XCDR2: "
            + ", ".join(k.hex() for k in _BYTE_ORDER)
            + ")"
        )
    return _BYTE_ORDER[kind]


def read_stamp(raw: bytes | bytearray | memoryview) -> tuple[int, int]:
    """``(sec, nanosec)`` of the leading header of a serialised message."""
    order = byte_order(raw)
    sec, nanosec = struct.unpack_from(f"{order}iI", raw, 4)
    return sec, nanosec


def stamp_key(raw: bytes | bytearray | memoryview) -> int:
    """The leading header stamp as integer nanoseconds (the benchmark's message key)."""
    sec, nanosec = read_stamp(raw)
    return sec * 1_000_000_000 + nanosec


def with_stamp(raw: bytes | bytearray | memoryview, stamp_ns: int) -> bytes:
    """A copy of ``raw`` whose header stamp is ``stamp_ns`` (everything else unchanged).

    Args:
        raw: A serialised header-first message.
        stamp_ns: The new stamp in nanoseconds (non-negative, fits int32 seconds).

    Raises:
        CdrError: Unsupported buffer, or a stamp outside the ``builtin_interfaces/Time`` range.
    """
    order = byte_order(raw)
    sec, nanosec = divmod(int(stamp_ns), 1_000_000_000)
    if not 0 <= sec < 2**31:
        raise CdrError(f"stamp {stamp_ns} ns does not fit builtin_interfaces/Time")
    out = bytearray(raw)
    struct.pack_into(f"{order}iI", out, 4, sec, nanosec)
    return bytes(out)


class StampSequence:
    """Unique, strictly increasing stamps close to the wall clock.

    Wall-clock stamps keep recorded outputs readable on a timeline; forcing them to increase
    keeps them unique even when two frames are sent within the clock's resolution.
    """

    def __init__(self) -> None:
        self.last = 0

    def next(self, now_ns: int) -> int:
        """The stamp for a frame sent at ``now_ns`` (wall clock, ns)."""
        self.last = max(int(now_ns), self.last + 1)
        return self.last
