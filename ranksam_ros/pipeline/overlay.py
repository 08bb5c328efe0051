"""Drawing results for people: class-coloured masks, outlines, prompts, contact sheets.

numpy + Pillow only; the ROS node's ``~/overlay`` topic and the demo both use this.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from ranksam_ros.pipeline.result import Segmentation

# The CamVid colours of the SegNet tutorial, in class order; other classes cycle a hue wheel.
CAMVID_COLORS = np.array(
    [
        [128, 128, 128],
        [128, 0, 0],
        [192, 192, 128],
        [128, 64, 128],
        [60, 40, 222],
        [128, 128, 0],
        [192, 128, 128],
        [64, 64, 128],
        [64, 0, 128],
        [64, 64, 0],
        [0, 128, 192],
    ],
    dtype=np.uint8,
)


def class_color(class_id: int) -> np.ndarray:
    """RGB colour of a class (grey for unknown)."""
    if class_id < 0:
        return np.array([200, 200, 200], np.uint8)
    if class_id < len(CAMVID_COLORS):
        return CAMVID_COLORS[class_id]
    hue = (class_id * 0.61803) % 1.0
    return (
        np.array(Image.new("HSV", (1, 1), (int(hue * 255), 200, 230)).convert("RGB"))[0, 0]
    ).astype(np.uint8)


def colorize_labels(labels: np.ndarray, unassigned: int = 255) -> np.ndarray:
    """Class-index map ``(H, W)`` -> RGB ``(H, W, 3)`` (unassigned pixels black)."""
    out = np.zeros((*labels.shape, 3), np.uint8)
    for class_id in np.unique(labels):
        if class_id != unassigned:
            out[labels == class_id] = class_color(int(class_id))
    return out


def _outline(mask: np.ndarray) -> np.ndarray:
    inner = mask.copy()
    inner[1:, :] &= mask[:-1, :]
    inner[:-1, :] &= mask[1:, :]
    inner[:, 1:] &= mask[:, :-1]
    inner[:, :-1] &= mask[:, 1:]
    return mask & ~inner


def draw_overlay(
    image: np.ndarray, result: Segmentation, alpha: float = 0.5, prompts: bool = True
) -> np.ndarray:
    """Blend class colours over the frame, outline instances, mark the decoded prompts.

    Args:
        image: RGB uint8 ``(H, W, 3)``.
        result: The frame's segmentation.
        alpha: Opacity of the class colours.
        prompts: Draw the prompts actually decoded (white dots; kept instances ringed).

    Returns:
        RGB uint8 ``(H, W, 3)``.
    """
    out = image.astype(np.float32)
    colors = colorize_labels(result.semantic).astype(np.float32)
    covered = result.instance_ids > 0
    out[covered] = (1 - alpha) * out[covered] + alpha * colors[covered]
    out = out.astype(np.uint8)
    for inst in result.instances:
        out[_outline(inst.mask)] = 255
    canvas = Image.fromarray(out)
    if prompts:
        draw = ImageDraw.Draw(canvas)
        for x, y in result.prompts_xy:
            draw.ellipse((x - 2, y - 2, x + 2, y + 2), fill=(255, 255, 255))
        for inst in result.instances:
            x, y = inst.prompt_xy
            draw.ellipse((x - 4, y - 4, x + 4, y + 4), outline=(0, 0, 0), width=1)
    return np.asarray(canvas)


def contact_sheet(images: list[np.ndarray], columns: int = 3, gap: int = 4) -> np.ndarray:
    """Tile equally sized RGB images into one ``rows x columns`` sheet."""
    if not images:
        raise ValueError("contact_sheet needs at least one image")
    height, width = images[0].shape[:2]
    rows = (len(images) + columns - 1) // columns
    sheet = np.full((rows * (height + gap) - gap, columns * (width + gap) - gap, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, columns)
        sheet[
            r * (height + gap) : r * (height + gap) + height,
            c * (width + gap) : c * (width + gap) + width,
        ] = img
    return sheet
