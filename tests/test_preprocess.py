"""numpy pre/post-processing agrees with segment-anything's own transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from segment_anything.utils.transforms import ResizeLongestSide

from ranksam_ros.graph.preprocess import ResizeInfo, check_image, preprocess, resize_longest
from ranksam_ros.pipeline.postprocess import (
    bilinear_matrix,
    clip_to_boxes,
    upscale_logits,
    upscale_masks,
    upscale_to_input,
)


@pytest.mark.parametrize("shape", [(360, 480), (480, 360), (100, 333), (64, 64)])
def test_resize_matches_sam(shape):
    image = np.random.default_rng(0).integers(0, 256, (*shape, 3), dtype=np.uint8)
    ours = resize_longest(image, 256)
    theirs = ResizeLongestSide(256).apply_image(image)
    assert ours.shape == theirs.shape
    assert np.array_equal(ours, theirs)


def test_preprocess_matches_sam_normalise_and_pad(micro_model):
    image = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    arch = micro_model.arch
    tensor, info = preprocess(image, arch.img_size, arch.pixel_mean, arch.pixel_std)
    resized = torch.as_tensor(ResizeLongestSide(arch.img_size).apply_image(image))
    expected = micro_model.sam.preprocess(resized.permute(2, 0, 1)[None].float())
    assert tensor.shape == (1, 3, arch.img_size, arch.img_size)
    np.testing.assert_allclose(tensor, expected.numpy(), atol=1e-5)
    assert info.resized_hw == (48, 64)


def test_coordinates_round_trip():
    image = np.zeros((360, 480, 3), np.uint8)
    _, info = preprocess(image, 384, (0, 0, 0), (1, 1, 1))
    xy = np.array([[10.0, 20.0], [479.0, 359.0]])
    np.testing.assert_allclose(info.to_source(info.to_input(xy)), xy)
    expected = ResizeLongestSide(384).apply_coords(xy, (360, 480))
    np.testing.assert_allclose(info.to_input(xy), expected)


@pytest.mark.parametrize("in_size,out_size", [(16, 64), (64, 256), (96, 37), (5, 5)])
def test_bilinear_matrix_matches_torch(in_size, out_size):
    x = torch.randn(1, 1, in_size, 3)
    expected = F.interpolate(x, (out_size, 3), mode="bilinear", align_corners=False)[0, 0]
    ours = bilinear_matrix(in_size, out_size) @ x[0, 0].double().numpy()
    # torch computes source indices in float32, so non-integer ratios differ by ~1e-5.
    np.testing.assert_allclose(ours, expected.numpy(), atol=1e-4)


def test_upscale_logits_matches_sam_postprocess(micro_model):
    image = np.zeros((45, 77, 3), np.uint8)
    arch = micro_model.arch
    _, info = preprocess(image, arch.img_size, arch.pixel_mean, arch.pixel_std)
    logits = torch.randn(3, 1, arch.mask_size, arch.mask_size) * 5
    expected = micro_model.sam.postprocess_masks(logits, info.resized_hw, info.source_hw)[:, 0]
    ours = upscale_logits(logits[:, 0].numpy(), info)
    np.testing.assert_allclose(ours, expected.numpy(), atol=1e-4)
    full = upscale_to_input(logits[:, 0].numpy(), arch.img_size)
    assert full.shape == (3, arch.img_size, arch.img_size)


@pytest.mark.parametrize("source_hw", [(360, 480), (480, 360), (37, 501), (700, 90), (96, 96)])
def test_windowed_masks_equal_full_frame_upscaling(source_hw):
    """Masks upscaled only where a low-res cell passes the cut equal the full-frame ones."""
    rng = np.random.default_rng(sum(source_hw))
    size, side = 384, 96
    scale = size / max(source_hw)
    resized = tuple(int(round(n * scale)) for n in source_hw)
    info = ResizeInfo(source_hw, resized, size)
    logits = rng.normal(0.0, 3.0, (6, side, side)).astype(np.float32)
    logits[logits < 4.0] = -8.0  # sparse blobs, as thing masks are
    logits[4] = -8.0  # a mask with no cell above its cut
    logits[5, :2, :2] = 9.0  # one in the corner the window search must reach
    cuts = np.array([-2.0, 0.0, 1.0, 0.0, 0.0, 0.5])
    boxes = np.full((6, 4), np.nan)
    boxes[1] = [10.3, 5.7, 200.2, 100.9]
    boxes[2] = [-5.0, -5.0, source_hw[1] + 10.0, source_hw[0] + 3.0]
    expected = upscale_logits(logits, info) > cuts[:, None, None]
    clip_to_boxes(expected, boxes)
    masks = upscale_masks(logits, info, cuts, boxes)
    assert masks.shape == (6, *source_hw) and masks.dtype == bool
    assert np.count_nonzero(masks != expected) == 0
    assert masks[0].any() and not masks[4].any() and masks[5, 0, 0]


@pytest.mark.parametrize(
    "bad,match",
    [
        (np.zeros((10, 10), np.uint8), "HxWx3"),
        (np.zeros((10, 10, 3), np.float32), "uint8"),
        (np.zeros((0, 10, 3), np.uint8), "empty"),
        ([[1, 2, 3]], "numpy array"),
    ],
)
def test_bad_images_are_clear_errors(bad, match):
    with pytest.raises(ValueError, match=match):
        check_image(bad)
