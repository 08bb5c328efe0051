"""numpy pre/post-processing agrees with segment-anything's own transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from segment_anything.utils.transforms import ResizeLongestSide

from ranksam_ros.graph.preprocess import check_image, preprocess, resize_longest
from ranksam_ros.pipeline.postprocess import bilinear_matrix, upscale_logits, upscale_to_input


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
