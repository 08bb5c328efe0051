"""Image/label folders (CamVid layout: ``images/*.jpg`` + ``labels/*.png`` with equal stems)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
# Ten CamVid val frames with labels inside the package: demo, int8 calibration, tests.
BUNDLED_FRAMES = Path(__file__).resolve().parent.parent / "assets" / "camvid_val"


def read_rgb(path: str | Path) -> np.ndarray:
    """Decode an image file to RGB uint8 ``(H, W, 3)``; ``ValueError`` names a corrupt file."""
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot decode image {path}: {exc}") from exc


def read_label(path: str | Path) -> np.ndarray:
    """Decode a single-channel class-index PNG to uint8 ``(H, W)``."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("L", "P", "I", "I;16"):
                raise ValueError(f"label {path} must be single-channel, got mode {img.mode}")
            return np.asarray(img).astype(np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValueError(f"cannot decode label {path}: {exc}") from exc


class SegmentationFolder:
    """Pairs of RGB images and class-index labels, sorted by file name.

    Args:
        root: Directory holding ``images/`` and ``labels/``.
        require_labels: Fail if ``labels/`` is missing (training and evaluation need it).
        cache: Keep decoded frames in memory (CamVid train is ~190 MB).
        sequences: Keep only frames whose name starts with one of these (e.g. ``0006R0``).
        exclude_sequences: Drop frames whose name starts with one of these.

    Raises:
        FileNotFoundError: ``root`` or ``images/`` (or ``labels/`` when required) is missing.
        ValueError: the folder is empty (after the sequence filters) or an image has no label
            with the same stem.
    """

    def __init__(
        self,
        root: str | Path,
        require_labels: bool = True,
        cache: bool = False,
        sequences: tuple[str, ...] = (),
        exclude_sequences: tuple[str, ...] = (),
    ) -> None:
        self.root = Path(root)
        image_dir = self.root / "images"
        label_dir = self.root / "labels"
        if not image_dir.is_dir():
            raise FileNotFoundError(f"{self.root}: no images/ folder")
        if require_labels and not label_dir.is_dir():
            raise FileNotFoundError(f"{self.root}: no labels/ folder")
        self.images = sorted(
            p
            for p in image_dir.iterdir()
            if p.suffix.lower() in IMAGE_SUFFIXES
            and (not sequences or p.stem.startswith(tuple(sequences)))
            and not p.stem.startswith(tuple(exclude_sequences))
        )
        if not self.images:
            chosen = f" of sequences {list(sequences)}" if sequences else ""
            left = f" outside {list(exclude_sequences)}" if exclude_sequences else ""
            raise ValueError(f"{image_dir}: no images{chosen}{left} ({', '.join(IMAGE_SUFFIXES)})")
        self.labels: list[Path | None] = []
        for image in self.images:
            label = label_dir / f"{image.stem}.png"
            if not label.is_file():
                if require_labels:
                    raise ValueError(f"image {image.name} has no label {label}")
                label = None
            self.labels.append(label)
        self.cache = cache
        self._cache: dict[int, tuple[np.ndarray, np.ndarray | None]] = {}

    def __len__(self) -> int:
        return len(self.images)

    def name(self, index: int) -> str:
        return self.images[index].stem

    def __getitem__(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        """``(image (H, W, 3) uint8, label (H, W) uint8 or None)``."""
        if index in self._cache:
            return self._cache[index]
        image = read_rgb(self.images[index])
        label_path = self.labels[index]
        label = read_label(label_path) if label_path is not None else None
        if label is not None and label.shape != image.shape[:2]:
            raise ValueError(
                f"size mismatch: {self.images[index].name} is {image.shape[1]}x{image.shape[0]} "
                f"but {label_path.name} is {label.shape[1]}x{label.shape[0]}"
            )
        if self.cache:
            self._cache[index] = (image, label)
        return image, label
