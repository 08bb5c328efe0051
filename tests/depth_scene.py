"""A depth scene of known geometry: a wall at 4 m, a box whose front face is at 2 m, a hole.

The camera is a pinhole (``K`` below) looking along +z; pixels are rendered at their centres,
so a surface covers exactly the pixels whose centre ray hits it. ``expected(box, z)`` gives
what a mask of pixel box ``box`` lying wholly on a surface at depth ``z`` must measure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

WIDTH, HEIGHT = 320, 240
FX, FY, CX, CY = 250.0, 260.0, 159.5, 119.5
K = (FX, 0.0, CX, 0.0, FY, CY, 0.0, 0.0, 1.0)
WALL_Z, BOX_Z = 4.0, 2.0
BOX_XY_M = (-0.2, -0.3, 0.4, 0.2)  # front face x0, y0, x1, y1 in metres at z = 2 m
HOLE = (10, 10, 69, 59)  # pixel box (x0, y0, x1, y1) where the camera measured nothing


def face_pixels(xy_m: tuple[float, float, float, float], z: float) -> tuple[int, int, int, int]:
    """Inclusive pixel box ``(x0, y0, x1, y1)`` whose centres see the face ``xy_m`` at ``z``."""
    x0, y0, x1, y1 = xy_m
    u0, u1 = np.ceil(CX + x0 * FX / z), np.ceil(CX + x1 * FX / z) - 1
    v0, v1 = np.ceil(CY + y0 * FY / z), np.ceil(CY + y1 * FY / z) - 1
    return int(u0), int(v0), int(u1), int(v1)


BOX = face_pixels(BOX_XY_M, BOX_Z)
WALL = (230, 150, 299, 219)  # a patch of wall (pixels), away from the box and the hole


def depth_metres() -> np.ndarray:
    """``(H, W)`` float32: wall at 4 m, box face at 2 m, NaN in the hole."""
    depth = np.full((HEIGHT, WIDTH), WALL_Z, np.float32)
    x0, y0, x1, y1 = BOX
    depth[y0 : y1 + 1, x0 : x1 + 1] = BOX_Z
    x0, y0, x1, y1 = HOLE
    depth[y0 : y1 + 1, x0 : x1 + 1] = np.nan
    return depth


def depth_millimetres() -> np.ndarray:
    """The same scene as 16UC1: millimetres, 0 = no depth."""
    return np.nan_to_num(depth_metres() * 1000.0, nan=0.0).round().astype(np.uint16)


def box_mask(box: tuple[int, int, int, int]) -> np.ndarray:
    """``(H, W)`` bool of an inclusive pixel box."""
    x0, y0, x1, y1 = box
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[y0 : y1 + 1, x0 : x1 + 1] = True
    return mask


def grow(box: tuple[int, int, int, int], pixels: int) -> tuple[int, int, int, int]:
    """``box`` grown by ``pixels`` on every side."""
    x0, y0, x1, y1 = box
    return x0 - pixels, y0 - pixels, x1 + pixels, y1 + pixels


@dataclass(frozen=True)
class Expected:
    """Centre and size in metres of a pixel box lying on a fronto-parallel surface."""

    position: tuple[float, float, float]
    extent: tuple[float, float, float]


def expected(box: tuple[int, int, int, int], z: float) -> Expected:
    """The true centre and size of the surface patch that pixel box ``box`` sees at ``z``."""
    x0, y0, x1, y1 = box
    centre = (((x0 + x1) / 2 - CX) * z / FX, ((y0 + y1) / 2 - CY) * z / FY, z)
    size = ((x1 - x0 + 1) * z / FX, (y1 - y0 + 1) * z / FY, 0.0)
    return Expected(centre, size)
