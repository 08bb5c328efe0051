from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from ranksam_ros.data.degrade import degrade, eval_degradation
from ranksam_ros.data.folder import SegmentationFolder
from ranksam_ros.data.segments import box_prompt, find_segments, interior_point, point_prompts


def test_bundled_frames_load(frames_dir):
    folder = SegmentationFolder(frames_dir)
    assert len(folder) == 10
    image, label = folder[0]
    assert image.shape == (360, 480, 3) and image.dtype == np.uint8
    assert label.shape == (360, 480) and label.max() <= 11


def _copy(frames_dir, tmp_path, count=2):
    for sub in ("images", "labels"):
        (tmp_path / sub).mkdir()
        for path in sorted((frames_dir / sub).iterdir())[:count]:
            shutil.copy(path, tmp_path / sub / path.name)
    return tmp_path


def test_missing_and_mismatched_folders_are_named(frames_dir, tmp_path):
    with pytest.raises(FileNotFoundError, match="no images/"):
        SegmentationFolder(tmp_path)
    root = _copy(frames_dir, tmp_path)
    label = sorted((root / "labels").iterdir())[0]
    label.unlink()
    with pytest.raises(ValueError, match=f"has no label .*{label.name}"):
        SegmentationFolder(root)


def test_size_mismatch_and_corrupt_files(frames_dir, tmp_path):
    root = _copy(frames_dir, tmp_path)
    labels = sorted((root / "labels").iterdir())
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(labels[0])
    folder = SegmentationFolder(root)
    with pytest.raises(ValueError, match="size mismatch"):
        folder[0]
    images = sorted((root / "images").iterdir())
    images[1].write_bytes(b"\xff\xd8\xff garbage")
    with pytest.raises(ValueError, match=f"cannot decode image .*{images[1].name}"):
        folder[1]


def test_empty_folder(tmp_path):
    (tmp_path / "images").mkdir()
    (tmp_path / "labels").mkdir()
    with pytest.raises(ValueError, match="no images"):
        SegmentationFolder(tmp_path)


def test_segments_are_connected_components_per_class():
    label = np.full((20, 30), 11, np.uint8)
    label[2:6, 2:8] = 3
    label[10:15, 20:28] = 3
    label[12:14, 2:4] = 8
    segments = find_segments(label, 11, min_area=1, ignore_label=11)
    assert sorted((s.class_id, s.area) for s in segments) == [(3, 24), (3, 40), (8, 4)]
    road = [s for s in segments if s.area == 40][0]
    assert road.box == (20, 10, 27, 14)
    assert len(find_segments(label, 11, min_area=10, ignore_label=11)) == 2


def test_prompts_stay_inside():
    label = np.zeros((40, 40), np.uint8) + 11
    label[5:20, 10:30] = 1
    (seg,) = find_segments(label, 11, 1, 11)
    rng = np.random.default_rng(0)
    points = point_prompts(seg, 5, rng)
    assert all(seg.mask[int(y), int(x)] for x, y in points)
    x, y = interior_point(seg.mask)
    assert seg.mask[int(y), int(x)]
    box = box_prompt(seg, 0.0, rng)
    assert tuple(box) == (10, 5, 29, 19)
    jittered = box_prompt(seg, 0.1, np.random.default_rng(1))
    assert np.all(jittered != box) and np.all(np.abs(jittered - box) <= 20)  # moved, capped
    assert np.array_equal(jittered, box_prompt(seg, 0.1, np.random.default_rng(1)))  # seeded


def test_jittered_boxes_stay_ordered_and_inside_the_frame():
    label = np.full((40, 40), 11, np.uint8)
    label[25:40, 30:40] = 2  # touches the right and bottom borders
    (corner,) = find_segments(label, 11, 1, 11)
    box = box_prompt(corner, 0.5, np.random.default_rng(0))
    assert (box[2], box[3]) == (39, 39)  # pushed past both borders, clipped back onto them
    assert box[0] < box[2] and box[1] < box[3] and box[0] != 30 and box[1] != 25


@pytest.mark.parametrize("kind", ["noise", "blur", "lowlight", "fog", "motion"])
def test_degradations_are_deterministic_and_grow_with_severity(frames_dir, kind):
    image, _ = SegmentationFolder(frames_dir)[0]
    first = degrade(image, kind, 2, np.random.default_rng(3))
    again = degrade(image, kind, 2, np.random.default_rng(3))
    assert np.array_equal(first, again)
    errors = [
        np.abs(degrade(image, kind, s, np.random.default_rng(3)).astype(float) - image).mean()
        for s in (1, 2, 3, 4, 5)
    ]
    assert errors[0] > 0 and all(a < b for a, b in zip(errors, errors[1:]))


def test_eval_degradation_modes(frames_dir):
    image, _ = SegmentationFolder(frames_dir)[0]
    clean, kind, severity = eval_degradation(image, "none", 0, 0)
    assert clean is image and kind == "none" and severity == 0
    a = eval_degradation(image, "mixed", 5, 3)
    b = eval_degradation(image, "mixed", 5, 3)
    assert (
        np.array_equal(a[0], b[0]) and a[1] == b[1] and a[1] in ("noise", "blur", "lowlight", "fog")
    )
    with pytest.raises(ValueError, match="--degrade"):
        eval_degradation(image, "snow", 0, 0)
    with pytest.raises(ValueError, match="severity"):
        degrade(image, "noise", 6, np.random.default_rng(0))


def test_eval_degradation_cycles_the_given_severities(frames_dir):
    image, _ = SegmentationFolder(frames_dir)[0]
    default = [eval_degradation(image, "fog", 0, i)[2] for i in range(4)]
    heavy = [eval_degradation(image, "fog", 0, i, (4, 5))[2] for i in range(4)]
    assert default == [1, 2, 3, 1] and heavy == [4, 5, 4, 5]
    assert eval_degradation(image, "mixed", 5, 3, (5,))[2] == 5
    with pytest.raises(ValueError, match="severities"):
        eval_degradation(image, "fog", 0, 0, ())
    with pytest.raises(ValueError, match="severity must be one of"):
        eval_degradation(image, "fog", 0, 0, (7,))


def test_interior_point_on_a_crop_equals_the_full_frame():
    label = np.full((60, 80), 11, np.uint8)
    label[10:40, 20:70] = 2
    label[25:28, 20:50] = 11  # a notch makes the interior off-centre
    for seg in find_segments(label, 11, 1, 11):
        assert interior_point(seg.mask, seg.box) == interior_point(seg.mask)


def test_style_jitter_changes_the_look_not_the_frame():
    from ranksam_ros.data.augment import style_jitter

    image = np.random.default_rng(3).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    styled = style_jitter(image, 0.2, 0.0, np.random.default_rng(0))
    again = style_jitter(image, 0.2, 0.0, np.random.default_rng(0))
    assert styled.shape == image.shape and styled.dtype == np.uint8
    np.testing.assert_array_equal(styled, again)  # seeded: reproducible
    assert np.abs(styled.astype(int) - image).mean() > 1.0
    # Order of pixels by brightness survives a white balance and a tone curve (mostly).
    grey, styled_grey = image.mean(axis=2).ravel(), styled.mean(axis=2).ravel()
    assert np.corrcoef(grey, styled_grey)[0, 1] > 0.9
    grey_frame = style_jitter(image, 0.0, 1.0, np.random.default_rng(0))
    assert np.array_equal(grey_frame[..., 0], grey_frame[..., 1])
    assert np.array_equal(grey_frame[..., 1], grey_frame[..., 2])


def test_augment_without_style_draws_what_it_drew_before():
    """Configs without the style knobs keep their random streams (resumed runs reproduce)."""
    from ranksam_ros.data.augment import augment

    image = np.random.default_rng(4).integers(0, 256, (24, 32, 3), dtype=np.uint8)
    label = np.zeros((24, 32), np.uint8)
    plain = augment(image, label, np.random.default_rng(1), 0.5, 1.5, True, 0.2)
    styled = augment(image, label, np.random.default_rng(1), 0.5, 1.5, True, 0.2, style=0.2)
    default = augment(image, label, np.random.default_rng(1), 0.5, 1.5, True, 0.2, style=0.0)
    np.testing.assert_array_equal(plain[0], default[0])
    assert not np.array_equal(plain[0], styled[0])


@pytest.mark.parametrize("field,value", [("style_jitter", 0.7), ("grayscale_prob", 1.5)])
def test_out_of_range_style_settings_are_named(field, value):
    from ranksam_ros.config import DataConfig

    with pytest.raises(ValueError, match=f"data.{field}"):
        DataConfig(**{field: value})
