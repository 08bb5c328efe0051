"""Geometric and photometric augmentations applied jointly to an image and its label."""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

# Pixels a zoom-out leaves uncovered: SAM's pixel mean (normalises to 0, like input padding).
FILL_RGB = (124, 116, 104)


def _resize_pair(
    image: np.ndarray, label: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray]:
    """Image bilinear, label nearest (class indices must not blend)."""
    image = np.asarray(Image.fromarray(image).resize((width, height), Image.BILINEAR))
    label = np.asarray(Image.fromarray(label).resize((width, height), Image.NEAREST))
    return image, label


def zoom_crop(
    image: np.ndarray,
    label: np.ndarray,
    zoom: float,
    rng: np.random.Generator,
    ignore_label: int = 255,
) -> tuple[np.ndarray, np.ndarray]:
    """Rescale by ``zoom`` and cut or pad back to the original size at a random offset.

    ``zoom > 1`` crops a window of ``1/zoom`` of each side (objects grow); ``zoom < 1``
    shrinks the frame onto a canvas of :data:`FILL_RGB` whose label is ``ignore_label``
    (objects shrink, so the model sees the scales of far-away objects).
    """
    height, width = label.shape
    if zoom >= 1.0:
        crop_h, crop_w = int(round(height / zoom)), int(round(width / zoom))
        top = int(rng.integers(0, height - crop_h + 1))
        left = int(rng.integers(0, width - crop_w + 1))
        window = (slice(top, top + crop_h), slice(left, left + crop_w))
        return _resize_pair(image[window], label[window], width, height)
    small_h, small_w = max(1, int(round(height * zoom))), max(1, int(round(width * zoom)))
    small_image, small_label = _resize_pair(image, label, small_w, small_h)
    canvas = np.empty_like(image)
    canvas[:] = FILL_RGB
    canvas_label = np.full_like(label, ignore_label)
    top = int(rng.integers(0, height - small_h + 1))
    left = int(rng.integers(0, width - small_w + 1))
    canvas[top : top + small_h, left : left + small_w] = small_image
    canvas_label[top : top + small_h, left : left + small_w] = small_label
    return canvas, canvas_label


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast and saturation within ``1 ± strength``."""
    x = image.astype(np.float32)
    brightness, contrast, saturation = rng.uniform(1 - strength, 1 + strength, 3)
    x = x * brightness
    x = (x - x.mean()) * contrast + x.mean()
    grey = x.mean(axis=2, keepdims=True)
    x = (x - grey) * saturation + grey
    return np.clip(x + 0.5, 0, 255).astype(np.uint8)


def style_jitter(
    image: np.ndarray, strength: float, grayscale_prob: float, rng: np.random.Generator
) -> np.ndarray:
    """Another camera's rendering: white balance, tone curve and sometimes no colour at all.

    Per-channel gains within ``1 ± strength`` (normalised to keep the mean), a gamma in
    ``exp(± 2 strength)``, and with ``grayscale_prob`` the frame's luminance in all three
    channels. Colour jitter moves brightness and saturation; this moves what differs between
    sensors and their processing.
    """
    x = image.astype(np.float32) / 255.0
    if strength > 0:
        gains = rng.uniform(1 - strength, 1 + strength, 3)
        x = x * (gains / gains.mean())
        x = np.clip(x, 0.0, 1.0) ** math.exp(rng.uniform(-2 * strength, 2 * strength))
    if grayscale_prob > 0 and rng.random() < grayscale_prob:
        x = np.repeat((x @ np.array([0.299, 0.587, 0.114], np.float32))[..., None], 3, axis=2)
    return np.clip(x * 255.0 + 0.5, 0, 255).astype(np.uint8)


def draw_zoom(rng: np.random.Generator, min_zoom: float, max_zoom: float) -> float:
    """A zoom factor: uniform in ``[1, max_zoom]``, log-uniform once ``min_zoom < 1``."""
    if min_zoom >= 1.0:
        return float(rng.uniform(1.0, max_zoom))
    return float(math.exp(rng.uniform(math.log(min_zoom), math.log(max_zoom))))


def augment(
    image: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    zoom_prob: float,
    max_zoom: float,
    flip: bool,
    jitter: float,
    min_zoom: float = 1.0,
    ignore_label: int = 255,
    style: float = 0.0,
    grayscale_prob: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Random zoom (in and out), horizontal flip, colour and style jitter of an image pair.

    ``style`` and ``grayscale_prob`` are :func:`style_jitter`'s; at 0 it draws nothing.
    """
    if (max_zoom > 1.0 or min_zoom < 1.0) and rng.random() < zoom_prob:
        zoom = draw_zoom(rng, min_zoom, max_zoom)
        image, label = zoom_crop(image, label, zoom, rng, ignore_label)
    if flip and rng.random() < 0.5:
        image, label = image[:, ::-1], label[:, ::-1]
    if jitter > 0:
        image = color_jitter(image, jitter, rng)
    if style > 0 or grayscale_prob > 0:
        image = style_jitter(image, style, grayscale_prob, rng)
    return np.ascontiguousarray(image), np.ascontiguousarray(label)


def copy_paste(
    image: np.ndarray,
    label: np.ndarray,
    donor_image: np.ndarray,
    donor_label: np.ndarray,
    classes: tuple[int, ...],
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Paste the pixels of one class region of a donor frame at a random horizontal shift.

    Things (cars, pedestrians, cyclists, poles, signs) are rare in a few hundred frames;
    pasting them into other streets shows them against new backgrounds. The donor region
    keeps its row (road objects keep a plausible height in the frame); frames of another
    size are skipped.
    """
    if donor_label.shape != label.shape:
        return image, label
    present = [c for c in classes if np.any(donor_label == c)]
    if not present:
        return image, label
    mask = donor_label == present[int(rng.integers(len(present)))]
    shift = int(rng.integers(-label.shape[1] // 4, label.shape[1] // 4 + 1))
    mask = np.roll(mask, shift, axis=1)
    donor_image = np.roll(donor_image, shift, axis=1)
    donor_label = np.roll(donor_label, shift, axis=1)
    image, label = image.copy(), label.copy()
    image[mask] = donor_image[mask]
    label[mask] = donor_label[mask]
    return image, label
