"""PA-SAM prompt adapter in the mask decoder: neutral start, mining, training, files, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ranksam_ros.adapters.inject import adapter_state_dict, inject_adapters, remove_adapters
from ranksam_ros.adapters.io import load_adapters, save_adapters
from ranksam_ros.adapters.lora import LoraConfig
from ranksam_ros.adapters.prompt_adapter import PromptAdapterConfig, guide_input
from ranksam_ros.adapters.registry import adapter_target
from ranksam_ros.config import BackendConfig
from ranksam_ros.modeling.registry import build_model, save_model

BOX = torch.tensor([[8.0, 8.0, 40.0, 40.0]])


def _decode(model, image):
    with torch.no_grad():
        embedding, detail = model.encode_with_detail(image)
        return model.decode(embedding, boxes=BOX, detail=detail)[0]


def _randomize(model) -> None:
    with torch.no_grad():
        for param in adapter_state_dict(model.sam).values():
            param.add_(0.1 * torch.randn_like(param))


@pytest.mark.parametrize("arch", ["micro", "micro-conv"])
def test_neutral_until_trained_and_removable(arch):
    model = build_model(arch)
    image = torch.randn(1, 3, 64, 64)
    reference = _decode(model, image)
    cfg = PromptAdapterConfig(mine=False)
    assert inject_adapters(adapter_target(model.sam, cfg), cfg) == [
        "mask_decoder.transformer.layers.1",
        "mask_decoder.pa_guide",
    ]
    assert torch.equal(_decode(model, image), reference)  # zero last layers: SAM's masks
    model.prompt_adapter.mine = True
    _randomize(model)
    mined = _decode(model, image)
    assert not torch.allclose(mined, reference)
    maps = model.prompt_adapter.maps
    cells = model.sam.prompt_encoder.image_embedding_size
    assert maps["uncertainty"].shape == (1, cells[0] * cells[1])
    remove_adapters(model.sam)
    assert torch.equal(_decode(model, image), reference)


def test_guide_input_has_a_sobel_edge_channel():
    image = torch.zeros(1, 3, 64, 64)
    image[..., :, 32:] = 1.0  # a vertical step
    guide = guide_input(image, 16)
    assert guide.shape == (1, 4, 16, 16)
    edge = guide[0, 3]
    assert edge[:, 7:9].min() > 1.0 and edge[:, :6].max() < 1e-2


def test_adapter_file_round_trip_and_wrong_decoder_width(tmp_path):
    model = build_model("micro-conv")
    cfg = PromptAdapterConfig()
    inject_adapters(adapter_target(model.sam, cfg), cfg)
    _randomize(model)
    path = tmp_path / "pa_sam.safetensors"
    save_adapters(path, model.sam, cfg)
    plain = tmp_path / "base.safetensors"
    remove_adapters(model.sam)
    save_model(plain, model)
    loaded = build_model(str(plain), adapter=str(path))
    assert loaded.prompt_adapter is not None and loaded.adapter_cfg == cfg
    with pytest.raises(ValueError, match="does not fit"):
        load_adapters(path, build_model("tiny").sam)  # decoder width 128, not 32
    with pytest.raises(ValueError, match="more than the 4x4 cells"):
        inject_adapters(model.sam, PromptAdapterConfig(points=17))


def test_onnx_export_of_a_lora_and_pa_sam_stack_matches_torch(tmp_path):
    from ranksam_ros.backends.onnx_backend import OnnxBackend
    from ranksam_ros.backends.torch_backend import TorchBackend
    from ranksam_ros.deploy.export import export_model
    from ranksam_ros.graph.prompts import boxes_to_prompts

    model_dir = tmp_path / "model"
    (model_dir / "adapters").mkdir(parents=True)
    model = build_model("micro-conv")
    save_model(model_dir / "model.safetensors", model)
    cfg = PromptAdapterConfig()
    lora = LoraConfig(target_modules=("block.3", "block.5"), rank=2)
    inject_adapters(model.sam, cfg)
    _randomize(model)
    save_adapters(model_dir / "adapters" / "pa_sam.safetensors", model.sam, cfg)
    remove_adapters(model.sam)
    inject_adapters(model.sam.image_encoder, lora)
    _randomize(model)
    save_adapters(model_dir / "adapters" / "lora.safetensors", model.sam, lora)
    spec = BackendConfig(adapter="lora", prompt_adapter="pa_sam").adapter_spec
    assert spec == "lora+pa_sam"
    export_model(str(model_dir), tmp_path / "export", adapter=spec)
    ours = OnnxBackend(tmp_path / "export", threads=2)
    reference = TorchBackend(build_model(str(model_dir), adapter=spec))
    assert reference.model.prompt_adapter is not None
    assert reference.model.adapter_cfg == lora  # the encoder's set decides the export
    with pytest.raises(ValueError, match="two sets for the mask_decoder"):
        build_model(str(model_dir), adapter="pa_sam+pa_sam")
    image = np.random.default_rng(5).normal(size=(1, 3, 64, 64)).astype(np.float32)
    a, b = ours.encode(image), reference.encode(image)
    # Three prompts: not the count the decoder graph was traced with.
    boxes = np.array([[4, 4, 40, 30], [10, 2, 60, 50], [0, 20, 30, 63]], np.float32)
    coords, labels = boxes_to_prompts(boxes)
    (ma, ia), (mb, ib) = (
        ours.decode(a, coords, labels, False),
        reference.decode(b, coords, labels, False),
    )
    np.testing.assert_allclose(ma, mb, atol=1e-3)
    np.testing.assert_allclose(ia, ib, atol=1e-4)


def test_adapter_stage_trains_the_adapter_and_named_decoder_parts(dataset_root, tmp_path):
    from ranksam_ros.config_loader import load_config
    from ranksam_ros.train.config import TrainConfig
    from ranksam_ros.train.loop import Trainer

    base = tmp_path / "base.safetensors"
    save_model(base, build_model("micro-conv"))
    overrides = [
        "stage=adapter",
        f"model={base}",
        f"data.root={dataset_root}",
        f"out_dir={tmp_path / 'pa'}",
        "optim.steps=2",
        "optim.batch_size=1",
        "data.prompts_per_image=3",
        "loss.point_samples=64",
        "loss.iou_samples=32",
        "adapter.kind=prompt_adapter",
        "trainable=[sam\\.mask_decoder\\.output_upscaling\\..*]",
    ]
    trainer = Trainer(load_config(TrainConfig, None, overrides))
    encoder = {k: v.clone() for k, v in trainer.model.sam.image_encoder.state_dict().items()}
    upscaling = {
        k: v.clone()
        for k, v in trainer.model.sam.mask_decoder.output_upscaling.state_dict().items()
    }
    path = trainer.train()
    after = trainer.model.sam
    assert all(torch.equal(v, after.image_encoder.state_dict()[k]) for k, v in encoder.items())
    changed = after.mask_decoder.output_upscaling.state_dict()
    assert any(not torch.equal(v, changed[k]) for k, v in upscaling.items())
    # The set carries the decoder parts it retrained: it loads onto the unchanged base.
    assert not (tmp_path / "pa" / "model.safetensors").exists()
    model = build_model(str(base), adapter=str(path))
    assert model.prompt_adapter is not None
    loaded = model.sam.mask_decoder.output_upscaling.state_dict()
    assert all(torch.equal(v, loaded[k]) for k, v in changed.items())
    with pytest.raises(ValueError, match="pass the Sam"):
        load_adapters(path, build_model(str(base)).sam.image_encoder)
    assert torch.equal(model.sam.mask_decoder.output_upscaling[0].weight, changed["0.weight"])


def test_shipped_pa_sam_set_stacks_on_the_gated_encoder_and_changes_clicks():
    from ranksam_ros.backends.torch_backend import TorchBackend
    from ranksam_ros.data.folder import BUNDLED_FRAMES, SegmentationFolder
    from ranksam_ros.pipeline.pipeline import Pipeline, PromptSet

    image = SegmentationFolder(BUNDLED_FRAMES)[0][0]
    click = PromptSet(points=np.array([[240.0, 300.0]]))  # on the road
    masks = {}
    for spec in ("gated", "gated+pa_sam"):
        model = build_model("camvid-tiny", adapter=spec)
        assert (model.prompt_adapter is not None) == spec.endswith("pa_sam")
        result = Pipeline(TorchBackend(model, threads=1))(image, click)
        (instance,) = result.instances
        masks[spec] = instance.mask
    assert masks["gated+pa_sam"].sum() > 1000  # a real mask, not an empty one
    assert (masks["gated"] != masks["gated+pa_sam"]).any()  # the set's decoder is in use
