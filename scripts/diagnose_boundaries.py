"""Where box-prompt masks of large segments lose IoU: resolution ceiling and boundary band.

    python scripts/diagnose_boundaries.py --data ../shared/data/camvid/val

Ceiling: each ground-truth segment, area-averaged onto the model's mask grid and upsampled and
clipped exactly like the model's logits, scored against itself (what a perfect mask at this
resolution would reach). Band: the share of the model's error pixels (box prompt, clipped)
within 3, 5 and 10 source pixels of the segment's true boundary. Large = >= 1000 px.
"""

from __future__ import annotations

import argparse

import numpy as np
from PIL import Image
from scipy import ndimage

from ranksam_ros.backends import create_backend
from ranksam_ros.config import CAMVID_CLASSES, CAMVID_IGNORE_LABEL, BackendConfig
from ranksam_ros.data.folder import SegmentationFolder
from ranksam_ros.data.segments import find_segments
from ranksam_ros.graph.preprocess import preprocess
from ranksam_ros.graph.prompts import boxes_to_prompts
from ranksam_ros.pipeline.postprocess import clip_to_boxes, mask_iou, upscale_logits

BANDS = (3, 5, 10)


def perfect_logits(mask: np.ndarray, resized_hw: tuple[int, int], size: int, grid: int):
    """A ground-truth mask as the best logits ``(1, grid, grid)`` the mask grid can hold."""
    h, w = resized_hw
    resized = Image.fromarray(mask.astype(np.float32)).resize((w, h), Image.BILINEAR)
    padded = np.zeros((size, size), np.float32)
    padded[:h, :w] = np.asarray(resized)
    cell = size // grid
    return (padded.reshape(grid, cell, grid, cell).mean((1, 3)) - 0.5)[None]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--data", required=True)
    parser.add_argument("--model", default="camvid-tiny")
    args = parser.parse_args()
    backend = create_backend(BackendConfig(model=args.model, threads=2))
    info = backend.info
    folder = SegmentationFolder(args.data)
    ceiling, model_iou, errors, near = [], [], 0, dict.fromkeys(BANDS, 0)
    for index in range(len(folder)):
        image, label = folder[index]
        tensor, geometry = preprocess(image, info.input_size, info.pixel_mean, info.pixel_std)
        segments = find_segments(label, len(CAMVID_CLASSES), 1000, CAMVID_IGNORE_LABEL)
        if not segments:
            continue
        boxes = np.array([s.box for s in segments], np.float64)
        coords, labels = boxes_to_prompts(geometry.to_input(boxes.reshape(-1, 2)).reshape(-1, 4))
        logits, _ = backend.decode(backend.encode(tensor), coords, labels, multimask=False)
        masks = clip_to_boxes(upscale_logits(logits[:, 0], geometry) > 0, boxes)
        for segment, mask, box in zip(segments, masks, boxes):
            best = perfect_logits(
                segment.mask, geometry.resized_hw, info.input_size, info.mask_size
            )
            best_mask = clip_to_boxes(upscale_logits(best, geometry) > 0, box[None])[0]
            ceiling.append(mask_iou(best_mask, segment.mask))
            model_iou.append(mask_iou(mask, segment.mask))
            wrong = mask ^ segment.mask
            edge = segment.mask ^ ndimage.binary_erosion(segment.mask)
            distance = ndimage.distance_transform_edt(~edge)
            errors += int(wrong.sum())
            for band in BANDS:
                near[band] += int((wrong & (distance <= band)).sum())
    print(f"{args.model}: {len(model_iou)} large segments of {len(folder)} frames")
    print(f"  box-prompt IoU (clipped)         {np.mean(model_iou):.3f}")
    print(f"  ceiling of the {info.mask_size}x{info.mask_size} mask grid  {np.mean(ceiling):.3f}")
    for band in BANDS:
        print(f"  error pixels within {band:>2} px of the boundary  {near[band] / errors:.0%}")


if __name__ == "__main__":
    main()
