"""Geometric and photometric augmentations applied jointly to an image and its label."""

from __future__ import annotations

import numpy as np
from PIL import Image


def zoom_crop(
    image: np.ndarray, label: np.ndarray, zoom: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Crop a random window of ``1/zoom`` of each side and resize it back to the full size.

    Image: bilinear; label: nearest (class indices must not blend).
    """
    height, width = label.shape
    crop_h, crop_w = int(round(height / zoom)), int(round(width / zoom))
    top = int(rng.integers(0, height - crop_h + 1))
    left = int(rng.integers(0, width - crop_w + 1))
    image = image[top : top + crop_h, left : left + crop_w]
    label = label[top : top + crop_h, left : left + crop_w]
    image = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
    label = np.asarray(Image.fromarray(label).resize((width, height), Image.NEAREST))
    return image, label


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast and saturation within ``1 ± strength``."""
    x = image.astype(np.float32)
    brightness, contrast, saturation = rng.uniform(1 - strength, 1 + strength, 3)
    x = x * brightness
    x = (x - x.mean()) * contrast + x.mean()
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * saturation + grey
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def augment(
    image: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    zoom_prob: float,
    max_zoom: float,
    flip: bool,
    jitter: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Random zoom-crop, horizontal flip and colour jitter of an ``(image, label)`` pair."""
    if max_zoom > 1.0 and rng.random() < zoom_prob:
        image, label = zoom_crop(image, label, float(rng.uniform(1.0, max_zoom)), rng)
    if flip and rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    if jitter > 0:
        image = color_jitter(image, jitter, rng)
    return np.ascontiguousarray(image), np.ascontiguousarray(label)
