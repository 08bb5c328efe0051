"""The shipped convolutional model (``camvid-conv``): loads, and segments the bundled frames."""

from __future__ import annotations

import numpy as np
import pytest

from ranksam_ros.backends import create_backend
from ranksam_ros.config import CAMVID_IGNORE_LABEL, BackendConfig, PipelineConfig
from ranksam_ros.data.folder import BUNDLED_FRAMES, SegmentationFolder
from ranksam_ros.modeling.registry import shipped_models
from ranksam_ros.pipeline.panoptic import LABEL_DIVISOR
from ranksam_ros.pipeline.pipeline import Pipeline

pytestmark = pytest.mark.skipif(
    "camvid-conv" not in shipped_models(), reason="camvid-conv is not installed"
)


@pytest.fixture(scope="module")
def pipeline() -> Pipeline:
    backend = create_backend(BackendConfig(model="camvid-conv", threads=2))
    return Pipeline(backend, PipelineConfig())


def test_conv_model_has_the_semantic_head_and_the_prompt_predictor(pipeline):
    info = pipeline.backend.info
    assert info.semantic_head and info.prompt_predictor and len(info.class_names) == 11
    assert pipeline.panoptic  # the default output of a model with a semantic head


def test_panoptic_output_of_a_bundled_frame_agrees_with_its_labels(pipeline):
    image, label = SegmentationFolder(BUNDLED_FRAMES)[0]
    result = pipeline(image)
    valid = label != CAMVID_IGNORE_LABEL
    # A trained model, not random weights: most labelled pixels get their class (about 0.9).
    assert np.mean(result.semantic[valid] == label[valid]) > 0.75
    assert result.instances, "a street frame has cars, poles or pedestrians"
    things = {inst.class_name for inst in result.instances}
    assert things <= set(pipeline.cfg.thing_classes)
    np.testing.assert_array_equal(result.panoptic // LABEL_DIVISOR, result.semantic)
    np.testing.assert_array_equal(result.panoptic % LABEL_DIVISOR, result.instance_ids)
