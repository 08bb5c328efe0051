"""3D per instance in numpy: known scenes, depth edges, holes, intrinsics checks, points."""

from __future__ import annotations

import math

import depth_scene as scene
import numpy as np
import pytest

from ranksam_ros.node_config import DepthConfig
from ranksam_ros.pipeline.depth3d import (
    Intrinsics,
    IntrinsicsError,
    add_3d,
    instance_points,
    measure_instance,
    valid_depth,
)
from ranksam_ros.pipeline.postprocess import paint_labels
from ranksam_ros.pipeline.result import Instance, Segmentation

CFG = DepthConfig(enabled=True)
K = Intrinsics.from_k(scene.K, scene.WIDTH, scene.HEIGHT)


def _measure(box, depth=None, cfg=CFG):
    depth = scene.depth_metres() if depth is None else depth
    return measure_instance(scene.box_mask(box), depth, valid_depth(depth, cfg), K, cfg)


def _assert_close(got, want, position_tol=0.02, extent_rel=0.05):
    np.testing.assert_allclose(got.position, want.position, atol=position_tol)
    for axis in range(2):  # a fronto-parallel patch: x and y sizes, no depth extent
        assert got.extent[axis] == pytest.approx(want.extent[axis], rel=extent_rel)
    assert abs(got.extent[2]) < 0.01


def test_box_face_and_wall_patch_are_measured_where_they_are():
    _assert_close(_measure(scene.BOX), scene.expected(scene.BOX, scene.BOX_Z))
    _assert_close(_measure(scene.WALL), scene.expected(scene.WALL, scene.WALL_Z))
    # The box face is 0.6 m x 0.5 m: the scene's own numbers, not only the helper's.
    face = _measure(scene.BOX)
    assert face.extent[:2] == pytest.approx((0.6, 0.5), rel=0.05)
    assert face.valid_ratio == 1.0


def test_a_mask_spilling_onto_the_wall_keeps_the_box_numbers():
    """Three pixels of wall around the box face: erosion and the depth band remove them."""
    got = _measure(scene.grow(scene.BOX, 3), cfg=DepthConfig(enabled=True, erode_px=3))
    _assert_close(got, scene.expected(scene.BOX, scene.BOX_Z))
    naive = _measure(scene.grow(scene.BOX, 3), cfg=DepthConfig(enabled=True, erode_px=0))
    assert naive.position[2] == pytest.approx(2.0)  # the median alone already resists...
    plain_mean = np.nanmean(scene.depth_metres()[scene.box_mask(scene.grow(scene.BOX, 3))])
    assert plain_mean > 2.1  # ...where a mean would not


def test_flying_pixels_at_the_border_do_not_move_the_position():
    depth = scene.depth_metres()
    x0, y0, x1, y1 = scene.BOX
    depth[y0 : y1 + 1, x0] = 3.0  # a smeared column between face and wall
    depth[y0, x0 : x1 + 1] = 3.0
    got = _measure(scene.BOX, depth)
    _assert_close(got, scene.expected(scene.BOX, scene.BOX_Z))


def test_no_valid_depth_gives_nan_and_the_share_of_valid_pixels():
    hole = _measure(scene.HOLE)
    assert all(math.isnan(v) for v in hole.position + hole.extent)
    assert hole.valid_ratio == 0.0 and hole.valid_pixels == 0
    x0, y0, x1, y1 = scene.HOLE
    half = (x0, y0, x1 + (x1 - x0 + 1), y1)  # half hole, half wall
    got = _measure(half)
    assert 0.4 < got.valid_ratio < 0.6 and got.position[2] == pytest.approx(4.0)
    few = _measure(scene.HOLE, cfg=DepthConfig(min_valid_pixels=10**6))
    assert math.isnan(few.position[0])


def test_out_of_range_depth_is_invalid():
    depth = scene.depth_metres()
    got = _measure(scene.WALL, depth, DepthConfig(max_depth_m=3.0))
    assert math.isnan(got.position[2]) and got.valid_ratio == 0.0


def test_thin_masks_fall_back_to_the_whole_mask():
    x0, y0, _, y1 = scene.BOX
    pole = (x0 + 10, y0, x0 + 12, y1)  # three pixels wide: erosion by 2 leaves nothing
    got = _measure(pole)
    assert got.position[2] == pytest.approx(2.0) and got.valid_pixels > 0


def _segmentation(boxes, classes, track_ids) -> Segmentation:
    seg = Segmentation.empty((scene.HEIGHT, scene.WIDTH))
    for index, (box, class_id, track) in enumerate(zip(boxes, classes, track_ids), start=1):
        mask = scene.box_mask(box)
        seg.instances.append(
            Instance(
                index, class_id, "", 1.0, 1.0, box, int(mask.sum()), mask, (0.0, 0.0), 1.0,
                track_id=track,
            )
        )  # fmt: skip
    masks = np.stack([inst.mask for inst in seg.instances])
    ids = np.arange(1, len(boxes) + 1)
    seg.instance_ids = paint_labels(masks, np.ones(len(boxes)), ids, 0, np.uint16)
    return seg


def test_add_3d_fills_every_instance_and_refuses_a_misaligned_depth_image():
    seg = _segmentation([scene.BOX, scene.WALL, scene.HOLE], [8, 1, 2], [5, 6, 7])
    add_3d(seg, scene.depth_metres(), K, CFG)
    box, wall, hole = seg.instances
    assert box.position[2] == pytest.approx(2.0) and wall.position[2] == pytest.approx(4.0)
    assert math.isnan(hole.position[2]) and hole.depth_valid_ratio == 0.0
    with pytest.raises(ValueError, match="not the colour frame's 320x240"):
        add_3d(seg, np.ones((120, 160), np.float32), K, CFG)
    with pytest.raises(IntrinsicsError, match="camera_info is for 640x480"):
        add_3d(seg, scene.depth_metres(), Intrinsics.from_k(scene.K, 640, 480), CFG)


@pytest.mark.parametrize(
    "k, message",
    [
        ((0.0, 0, 160, 0, 250, 120, 0, 0, 1), "focal lengths"),
        ((250.0, 0, 160, 0, float("nan"), 120, 0, 0, 1), "focal lengths"),
        ((250.0, 0, float("inf"), 0, 250, 120, 0, 0, 1), "principal point"),
        ((250.0, 0, 160), "9 values"),
    ],
)
def test_bad_intrinsics_are_refused(k, message):
    with pytest.raises(IntrinsicsError, match=message):
        Intrinsics.from_k(k)


def test_points_carry_ids_and_lie_on_the_surfaces():
    seg = _segmentation([scene.BOX, scene.WALL, scene.HOLE], [8, 1, 2], [5, 6, 7])
    cfg = DepthConfig(points_stride=2)
    points = instance_points(seg, scene.depth_metres(), K, cfg)
    on_box = points.instance_id == 1
    assert set(points.instance_id.tolist()) == {1, 2}  # the hole has no valid depth
    np.testing.assert_allclose(points.xyz[on_box, 2], 2.0)
    np.testing.assert_allclose(points.xyz[~on_box, 2], 4.0)
    assert set(points.class_id[on_box].tolist()) == {8} and set(points.track_id.tolist()) == {5, 6}
    x0, y0, x1, y1 = scene.BOX
    per_axis = ((x1 - x0 + 2) // 2) * ((y1 - y0 + 2) // 2)  # every second pixel, both axes
    assert on_box.sum() == pytest.approx(per_axis, abs=x1 - x0 + y1 - y0)
    assert points.xyz[on_box, 0].min() == pytest.approx(-0.2, abs=0.02)
