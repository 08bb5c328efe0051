"""Registry, checkpoints and parity with segment-anything's own builder and predictor."""

from __future__ import annotations

import dataclasses
import pickle

import numpy as np
import pytest
import torch
from segment_anything import SamPredictor, sam_model_registry

from ranksam_ros.backends.torch_backend import TorchBackend
from ranksam_ros.graph.preprocess import preprocess
from ranksam_ros.modeling.build import ARCH_PRESETS, build_sam, infer_official_arch
from ranksam_ros.modeling.registry import build_model, save_model
from ranksam_ros.pipeline.postprocess import upscale_logits


@pytest.mark.parametrize("name", ["vit_b", "vit_l", "vit_h"])
def test_official_presets_match_the_official_builder(name):
    with torch.device("meta"):
        ours = build_sam(ARCH_PRESETS[name]).state_dict()
        theirs = sam_model_registry[name]().state_dict()
    assert ours.keys() == theirs.keys()
    assert all(ours[k].shape == theirs[k].shape for k in ours)


def test_infer_arch_and_reject_non_sam():
    with torch.device("meta"):
        state = sam_model_registry["vit_l"]().state_dict()
    assert infer_official_arch(state) == "vit_l"
    with pytest.raises(ValueError, match="not a SAM state dict"):
        infer_official_arch({"foo": torch.zeros(1)})


def test_our_checkpoint_round_trip(tmp_path, micro_model):
    path = tmp_path / "m.safetensors"
    save_model(path, micro_model, {"note": "test"})
    loaded = build_model(str(path))
    assert loaded.arch == micro_model.arch
    for key, value in micro_model.sam.state_dict().items():
        assert torch.equal(value, loaded.sam.state_dict()[key])


def test_official_pth_loads_with_weights_only(tmp_path):
    sam = build_sam(ARCH_PRESETS["micro"])
    path = tmp_path / "micro.pth"
    torch.save(sam.state_dict(), path)
    model = build_model("micro", checkpoint=str(path))
    assert torch.equal(
        model.sam.image_encoder.patch_embed.proj.weight, sam.image_encoder.patch_embed.proj.weight
    )


def test_bad_checkpoints_are_clear_errors(tmp_path, micro_model):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        build_model(str(tmp_path / "missing.safetensors"))
    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="corrupt|not a readable"):
        build_model(str(corrupt))
    # A pickle carrying code must never be executed.
    evil = tmp_path / "evil.pth"
    with evil.open("wb") as handle:
        pickle.dump({"x": EvilPayload()}, handle)
    with pytest.raises(ValueError, match="weights-only"):
        build_model("micro", checkpoint=str(evil))
    # Weights of another architecture.
    path = tmp_path / "micro.pth"
    torch.save(micro_model.sam.state_dict(), path)
    with pytest.raises(ValueError, match="does not fit this architecture"):
        build_model("tiny", checkpoint=str(path))
    with pytest.raises(ValueError, match="unknown model"):
        build_model("vit_z")


class EvilPayload:
    def __reduce__(self):
        return (print, ("this must never run",))


def _parity(model, image, points, labels, box):
    """Our numpy pipeline + torch backend vs SamPredictor on the same weights."""
    predictor = SamPredictor(model.sam)
    predictor.set_image(image)
    backend = TorchBackend(model)
    info = backend.info
    tensor, geometry = preprocess(image, info.input_size, info.pixel_mean, info.pixel_std)
    encoded = backend.encode(tensor)
    ref_embedding = predictor.get_image_embedding().numpy()
    np.testing.assert_allclose(encoded.embedding, ref_embedding, atol=1e-5, rtol=1e-5)
    ref_masks, ref_iou, ref_low = predictor.predict(
        point_coords=points, point_labels=labels, multimask_output=True, return_logits=True
    )
    coords = geometry.to_input(points)[None].astype(np.float32)
    low, iou = backend.decode(encoded, coords, labels[None].astype(np.float32), multimask=True)
    np.testing.assert_allclose(low[0], ref_low, atol=1e-5, rtol=1e-5)
    np.testing.assert_allclose(iou[0], ref_iou, atol=1e-5)
    ours = upscale_logits(low[0], geometry)
    np.testing.assert_allclose(ours, ref_masks, atol=1e-4, rtol=1e-4)
    assert np.mean((ours > 0) == (ref_masks > 0)) > 0.9999
    ref_box_masks, _, ref_box_low = predictor.predict(
        box=box, multimask_output=False, return_logits=True
    )
    from ranksam_ros.graph.prompts import boxes_to_prompts

    box_coords, box_labels = boxes_to_prompts(geometry.to_input(box.reshape(2, 2)).reshape(1, 4))
    box_low, _ = backend.decode(encoded, box_coords, box_labels, multimask=False)
    np.testing.assert_allclose(box_low[0], ref_box_low, atol=1e-5, rtol=1e-5)


def test_parity_with_sam_predictor_small(frames_dir):
    from ranksam_ros.data.folder import read_rgb

    model = build_model("tiny")
    image = read_rgb(sorted((frames_dir / "images").iterdir())[0])
    points = np.array([[100.0, 200.0], [300.0, 50.0]])
    _parity(model, image, points, np.array([1, 0]), np.array([50.0, 60.0, 200.0, 300.0]))


@pytest.mark.slow
def test_parity_with_sam_predictor_vit_b_official_layout(tmp_path, frames_dir):
    """Random vit_b saved in the official key layout loads and matches SamPredictor."""
    from ranksam_ros.data.folder import read_rgb

    official = sam_model_registry["vit_b"]()
    path = tmp_path / "sam_vit_b_random.pth"
    torch.save(official.state_dict(), path)
    del official
    model = build_model(str(path))
    assert model.arch == ARCH_PRESETS["vit_b"]
    image = read_rgb(sorted((frames_dir / "images").iterdir())[1])
    _parity(
        model,
        image,
        np.array([[240.0, 180.0]]),
        np.array([1]),
        np.array([10.0, 20.0, 300.0, 340.0]),
    )


def test_conv_encoder_is_sams_image_encoder_with_fine_features():
    from segment_anything.modeling import Sam

    from ranksam_ros.modeling.conv_encoder import ConvImageEncoder

    model = build_model("micro-conv")
    assert isinstance(model.sam, Sam) and isinstance(model.sam.image_encoder, ConvImageEncoder)
    image = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        embedding, fine = model.encode_with_detail(image)
        assert torch.equal(embedding, model.sam.image_encoder(image))
        assert embedding.shape == (2, 32, 4, 4) and fine.shape == (2, 4, 16, 16)
        box = torch.tensor([[8.0, 8.0, 40.0, 40.0]])
        with_fine, _ = model.decode(embedding[:1], boxes=box, detail=fine[:1])
        other, _ = model.decode(embedding[:1], boxes=box, detail=fine[:1] + 1.0)
        assert with_fine.shape == (1, 1, 16, 16)
        assert not torch.allclose(with_fine, other), "fine features must reach the masks"
        with pytest.raises(ValueError, match="pass detail="):
            model.decode(embedding[:1], boxes=box)
        logits = model.semantic_logits(embedding, fine)
    assert logits.shape == (2, 11, 16, 16)


def test_architecture_mismatches_name_the_file_or_field(tmp_path, micro_model):
    from ranksam_ros.checkpoint import load_tensors, save_tensors

    old = tmp_path / "vit.safetensors"
    save_model(old, micro_model)
    tensors, meta = load_tensors(old, "sam")
    meta["arch"] = dataclasses.asdict(ARCH_PRESETS["micro-conv"])
    forged = tmp_path / "vit_weights_conv_arch.safetensors"
    save_tensors(forged, tensors, meta)
    with pytest.raises(ValueError, match="vit_weights_conv_arch.safetensors.*does not fit"):
        build_model(str(forged))
    meta["arch"]["encoder"] = "mamba"
    save_tensors(forged, tensors, meta)
    with pytest.raises(ValueError, match=r"arch.encoder='mamba' is not one of vit, conv"):
        build_model(str(forged))
    conv = tmp_path / "conv.safetensors"
    save_model(conv, build_model("micro-conv"))
    official = tmp_path / "sam_vit_b.pth"
    torch.save(load_tensors(conv, "sam")[0], official)
    with pytest.raises(ValueError, match="sam_vit_b.pth.*not a SAM state dict"):
        build_model(str(official))


def test_a_model_cards_calibrated_box_cut_reaches_the_pipeline(tmp_path, micro_model):
    import json

    from ranksam_ros.config import DEFAULT_BOX_MASK_THRESHOLD, PipelineConfig
    from ranksam_ros.pipeline.pipeline import Pipeline

    save_model(tmp_path / "model.safetensors", micro_model)
    assert Pipeline(TorchBackend(build_model(str(tmp_path)))).cfg.box_mask_threshold == (
        DEFAULT_BOX_MASK_THRESHOLD  # no card: the global default
    )
    card = {"calibration": {"box_mask_threshold": -3.5, "source": "a held-out sweep"}}
    (tmp_path / "model.json").write_text(json.dumps(card))
    backend = TorchBackend(build_model(str(tmp_path)))
    assert backend.info.box_mask_threshold == -3.5
    assert Pipeline(backend).cfg.box_mask_threshold == -3.5
    chosen = PipelineConfig(box_mask_threshold=-1.0)  # the user's choice wins
    assert Pipeline(backend, chosen).cfg.box_mask_threshold == -1.0
    pipeline = Pipeline(backend, chosen)
    pipeline.cfg = PipelineConfig()  # swapped later, as the node does on a parameter change
    assert pipeline.cfg.box_mask_threshold == -3.5


@pytest.mark.parametrize(
    "calibration, message",
    [
        ({"box_cut": -1.0}, "calibration.box_cut is not one of"),
        ({"box_mask_threshold": "x"}, ""),
        ({"box_mask_threshold": True}, "calibration.box_mask_threshold must be a finite"),
        ({"box_mask_threshold": 10**400}, "calibration.box_mask_threshold must be a finite"),
        ({"semantic_logit_offsets": 0.5}, "calibration.semantic_logit_offsets must be a non-empty"),
        ({"semantic_logit_offsets": []}, "calibration.semantic_logit_offsets must be a non-empty"),
        (
            {"semantic_logit_offsets": [0.5, float("nan")]},
            "calibration.semantic_logit_offsets must",
        ),
        ({"semantic_logit_offsets": [True, 0.1]}, "calibration.semantic_logit_offsets must be"),
        # micro has no semantic head: any offsets are for classes it does not have
        (
            {"semantic_logit_offsets": [0.5, 1.0]},
            "calibration.semantic_logit_offsets: the model has no",
        ),
        (["box_mask_threshold", -1.0], "calibration must be an object"),
    ],
)
def test_a_bad_calibration_in_a_model_card_names_the_file(
    tmp_path, micro_model, calibration, message
):
    """Each bad entry fails the load with an error naming model.json and the field."""
    import json

    save_model(tmp_path / "model.safetensors", micro_model)
    (tmp_path / "model.json").write_text(json.dumps({"calibration": calibration}))
    with pytest.raises(ValueError, match=f"model.json: {message}"):
        build_model(str(tmp_path))
    (tmp_path / "model.json").write_text("{not json")
    with pytest.raises(ValueError, match="model.json: not JSON"):
        build_model(str(tmp_path))


def test_semantic_offsets_must_match_the_heads_classes(tmp_path):
    import json

    model = build_model("micro-conv")
    save_model(tmp_path / "model.safetensors", model)
    count = len(model.arch.semantic_classes)
    card = {"calibration": {"semantic_logit_offsets": [0.0] * (count + 1)}}
    (tmp_path / "model.json").write_text(json.dumps(card))
    with pytest.raises(ValueError, match=f"has {count + 1} values but .* has {count} classes"):
        build_model(str(tmp_path))
    card["calibration"]["semantic_logit_offsets"] = [0.25] * count
    (tmp_path / "model.json").write_text(json.dumps(card))
    assert build_model(str(tmp_path)).calibration["semantic_logit_offsets"] == (0.25,) * count
