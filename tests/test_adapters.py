"""One table of adapter cases through the same battery."""

from __future__ import annotations

import copy

import pytest
import torch

from ranksam_ros.adapters.gated_rank import BlockGate, GatedRankLinear, gumbel_sigmoid_hard
from ranksam_ros.adapters.inject import (
    adapter_layers,
    inject_adapters,
    is_adapter_param,
    mark_only_adapters_trainable,
    merge_adapters,
    set_adapters_enabled,
    unmerge_adapters,
)
from ranksam_ros.adapters.io import load_adapters, save_adapters
from ranksam_ros.config import AdapterConfig
from ranksam_ros.modeling.registry import build_model

CASES = {
    "lora": AdapterConfig(kind="lora", rank=4),
    "gated": AdapterConfig(kind="gated_rank", rank_low=2, rank_high=6),
    "gated_nested": AdapterConfig(kind="gated_rank", rank_low=2, rank_high=6, hierarchy="nested"),
    "gated_flat": AdapterConfig(kind="gated_rank", rank_low=2, rank_high=6, hierarchy="flat"),
    "lora_mlp_one_block": AdapterConfig(
        kind="lora", rank=2, target_modules=("mlp.lin[12]",), layers=(1,)
    ),
}


def _images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 64, 64)


def _randomize_adapters(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if is_adapter_param(name) and "gated_fc" not in name:
                param.normal_(0, 0.2)


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request):
    return CASES[request.param]


def test_identity_at_init(micro_model, case):
    model = micro_model
    x = _images()
    with torch.no_grad():
        reference = model.encode(x)
        inject_adapters(model.sam.image_encoder, case)
        adapted = model.encode(x)
    assert torch.equal(reference, adapted)


def test_adapters_change_output_once_trained(micro_model, case):
    model = micro_model
    x = _images()
    with torch.no_grad():
        reference = model.encode(x)
        inject_adapters(model.sam.image_encoder, case)
        _randomize_adapters(model)
        adapted = model.encode(x)
        set_adapters_enabled(model, False)
        disabled = model.encode(x)
    assert not torch.allclose(reference, adapted)
    assert torch.equal(reference, disabled)


def test_only_adapters_train(micro_model, case):
    model = micro_model
    inject_adapters(model.sam.image_encoder, case)
    count = mark_only_adapters_trainable(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert count > 0 and trainable
    assert all(is_adapter_param(n) for n in trainable)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any(n.endswith("attn.qkv.base.weight") or "lin" in n for n in frozen)


def test_save_load_round_trip(micro_model, make_micro_model, case, tmp_path):
    model = micro_model
    base = copy.deepcopy(model.sam.state_dict())
    inject_adapters(model.sam.image_encoder, case)
    _randomize_adapters(model)
    path = tmp_path / "adapter.safetensors"
    save_adapters(path, model.sam.image_encoder, case)
    fresh = make_micro_model()
    fresh.sam.load_state_dict(base)
    assert load_adapters(path, fresh.sam.image_encoder) == case
    x = _images()
    with torch.no_grad():
        assert torch.equal(model.encode(x), fresh.encode(x))
    other = build_model("tiny")
    with pytest.raises(ValueError, match="does not fit"):
        load_adapters(path, other.sam.image_encoder)


def test_merge_equals_unmerged_where_mergeable(micro_model, case):
    model = micro_model
    inject_adapters(model.sam.image_encoder, case)
    _randomize_adapters(model)
    x = _images()
    with torch.no_grad():
        unmerged = model.encode(x)
        if case.kind == "lora":
            merge_adapters(model)
            merged = model.encode(x)
            assert torch.allclose(unmerged, merged, atol=1e-5, rtol=1e-4)
            unmerge_adapters(model)
            assert torch.allclose(model.encode(x), unmerged, atol=1e-6)
        else:
            with pytest.raises(RuntimeError, match="cannot be merged"):
                merge_adapters(model)


def test_gated_merge_with_fixed_gates_matches(micro_model):
    cfg = CASES["gated"]
    model = micro_model
    inject_adapters(model.sam.image_encoder, cfg)
    _randomize_adapters(model)
    layers = [layer for _, layer in adapter_layers(model)]
    x = _images(1)
    with torch.no_grad():
        for layer in layers:
            layer.fixed_gates = (torch.arange(layer.rank) % 2).float()
        fixed = model.encode(x)
        merge_adapters(model)
        merged = model.encode(x)
    assert torch.allclose(fixed, merged, atol=1e-5, rtol=1e-4)


def test_closed_gates_equal_base_exactly(micro_model):
    cfg = AdapterConfig(kind="gated_rank", rank_low=2, rank_high=6, gate_bias_init=-5.0)
    model = micro_model
    x = _images()
    with torch.no_grad():
        reference = model.encode(x)
        inject_adapters(model.sam.image_encoder, cfg)
        _randomize_adapters(model)  # B != 0, but every gate is shut
        adapted = model.encode(x)
    assert torch.equal(reference, adapted)
    ranks = model.active_ranks()
    assert ranks and all(torch.equal(r, torch.zeros(2)) for r in ranks.values())


def test_gates_are_per_image_and_windows_follow_their_image(micro_model):
    cfg = CASES["gated"]
    model = micro_model
    inject_adapters(model.sam.image_encoder, cfg)
    _randomize_adapters(model)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, BlockGate):
                module.gated_fc2.weight.normal_(0, 3.0)
    x = _images(3) * torch.tensor([0.2, 1.0, 4.0]).view(3, 1, 1, 1)
    with torch.no_grad():
        batched = model.encode(x)
        ranks_batched = model.active_ranks()
        singles = torch.cat([model.encode(x[i : i + 1]) for i in range(3)])
    assert torch.allclose(batched, singles, atol=1e-5)
    assert all(r.shape == (3,) for r in ranks_batched.values())
    stacked = torch.stack(list(ranks_batched.values()))
    assert not torch.equal(stacked[:, 0], stacked[:, 2]), "gates should depend on the image"


def test_gumbel_gates_are_binary_with_gradient():
    logits = torch.zeros(4, 10, requires_grad=True)
    gates = gumbel_sigmoid_hard(logits, tau=1.0, training=True)
    assert set(gates.detach().unique().tolist()) <= {0.0, 1.0}
    gates.sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0
    assert torch.equal(
        gumbel_sigmoid_hard(torch.tensor([-1.0, 1.0]), 1.0, False), torch.tensor([0.0, 1.0])
    )


def test_gated_layer_without_gates_raises():
    layer = GatedRankLinear(torch.nn.Linear(4, 4), 1, 1)
    with pytest.raises(RuntimeError, match="no gates"):
        layer(torch.randn(2, 4))


def test_bad_targets_and_layers_are_clear_errors(micro_model):
    model = micro_model
    with pytest.raises(ValueError, match="match no linear"):
        inject_adapters(model.sam.image_encoder, AdapterConfig(target_modules=("attn.nothing",)))
    with pytest.raises(ValueError, match="out of range"):
        inject_adapters(model.sam.image_encoder, AdapterConfig(layers=(7,)))
    inject_adapters(model.sam.image_encoder, AdapterConfig())
    with pytest.raises(ValueError, match="already has adapters"):
        inject_adapters(model.sam.image_encoder, AdapterConfig())
