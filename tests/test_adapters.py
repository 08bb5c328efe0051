"""One table of adapter cases through the same battery."""

from __future__ import annotations

import copy

import pytest
import torch

from ranksam_ros.adapters.base import MergeSelection
from ranksam_ros.adapters.gated_rank import (
    BlockGate,
    GatedRankConfig,
    GatedRankLinear,
    gumbel_sigmoid_hard,
    per_token_form,
)
from ranksam_ros.adapters.inject import (
    adapter_layers,
    inject_adapters,
    is_adapter_param,
    mark_only_adapters_trainable,
    merge_adapters,
    merge_and_unload,
    remove_adapters,
    set_adapters_enabled,
    unmerge_adapters,
)
from ranksam_ros.adapters.io import load_adapters, save_adapters
from ranksam_ros.adapters.lora import LoraConfig
from ranksam_ros.adapters.registry import ADAPTER_KINDS, kind_of, parse_adapter_config
from ranksam_ros.adapters.tensor_lora import (
    TensorLoraConfig,
    orthogonality_penalty,
    set_tasks,
)
from ranksam_ros.checkpoint import load_tensors, save_tensors
from ranksam_ros.modeling.registry import build_model

CONV_LINEARS = ("block.3", "block.5")  # the two linears of a ConvNeXt block
CASES = {
    "lora": ("micro", LoraConfig(rank=4)),
    "gated": ("micro", GatedRankConfig(rank_low=2, rank_high=6)),
    "gated_nested": ("micro", GatedRankConfig(rank_low=2, rank_high=6, hierarchy="nested")),
    "gated_flat": ("micro", GatedRankConfig(rank_low=2, rank_high=6, hierarchy="flat")),
    "lora_mlp_one_block": (
        "micro",
        LoraConfig(rank=2, target_modules=("mlp.lin[12]",), layers=(1,)),
    ),
    "lora_conv": ("micro-conv", LoraConfig(rank=2, target_modules=CONV_LINEARS)),
    "gated_conv": (
        "micro-conv",
        GatedRankConfig(rank_low=2, rank_high=2, target_modules=CONV_LINEARS),
    ),
    "tensor_tucker": ("micro", TensorLoraConfig(rank_in=2, rank_out=3, dropout=0.0)),
    "tensor_separate": ("micro", TensorLoraConfig(sharing="separate", rank_in=2, dropout=0.0)),
    "tensor_shared_conv": (
        "micro-conv",
        TensorLoraConfig(sharing="shared", rank_in=2, dropout=0.0, target_modules=CONV_LINEARS),
    ),
}


def _encode(model, x: torch.Tensor, task: int = 0) -> torch.Tensor:
    """Encode ``x``; multi-task adapters see every image as task ``task``."""
    set_tasks(model, torch.full((len(x),), task, dtype=torch.long))
    return model.encode(x)


def _images(batch: int = 2) -> torch.Tensor:
    return torch.randn(batch, 3, 64, 64)


def _randomize_adapters(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for name, param in model.named_parameters():
            if is_adapter_param(name) and "gated_fc" not in name:
                param.normal_(0, 0.2)


@pytest.fixture(params=list(CASES), ids=list(CASES))
def case(request):
    """``(fresh model, adapter config)`` of one row of :data:`CASES`."""
    arch, cfg = CASES[request.param]
    return build_model(arch), cfg


def test_identity_at_init(case):
    model, case = case
    x = _images()
    with torch.no_grad():
        reference = _encode(model, x)
        inject_adapters(model.sam.image_encoder, case)
        adapted = _encode(model, x)
    assert torch.equal(reference, adapted)


def test_adapters_change_output_once_trained(case):
    model, case = case
    x = _images()
    with torch.no_grad():
        reference = _encode(model, x)
        inject_adapters(model.sam.image_encoder, case)
        _randomize_adapters(model)
        adapted = _encode(model, x)
        set_adapters_enabled(model, False)
        disabled = _encode(model, x)
    assert not torch.allclose(reference, adapted)
    assert torch.equal(reference, disabled)


def test_only_adapters_train(case):
    model, case = case
    inject_adapters(model.sam.image_encoder, case)
    count = mark_only_adapters_trainable(model)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert count > 0 and trainable
    assert all(is_adapter_param(n) for n in trainable)
    frozen = [n for n, p in model.named_parameters() if not p.requires_grad]
    assert any(n.endswith(".base.weight") for n in frozen)


def test_save_load_round_trip(case, tmp_path):
    model, case = case
    base = copy.deepcopy(model.sam.state_dict())
    inject_adapters(model.sam.image_encoder, case)
    _randomize_adapters(model)
    path = tmp_path / "adapter.safetensors"
    save_adapters(path, model.sam.image_encoder, case)
    fresh = build_model(model.model_id)
    fresh.sam.load_state_dict(base)
    assert load_adapters(path, fresh.sam.image_encoder) == case
    x = _images()
    with torch.no_grad():
        assert torch.equal(_encode(model, x), _encode(fresh, x))
    other = build_model("tiny")
    with pytest.raises(ValueError, match="does not fit"):
        load_adapters(path, other.sam.image_encoder)


def test_merge_equals_unmerged_where_mergeable(case):
    model, case = case
    inject_adapters(model.sam.image_encoder, case)
    _randomize_adapters(model)
    x = _images()
    # Multi-task adapters merge a chosen task (here task 0, the one _encode uses).
    selection = MergeSelection(task=0) if case.kind == "tensor_lora" else None
    with torch.no_grad():
        unmerged = _encode(model, x)
        if kind_of(case).mergeable or selection is not None:
            merge_adapters(model, selection)
            merged = _encode(model, x)
            assert torch.allclose(unmerged, merged, atol=1e-5, rtol=1e-4)
            unmerge_adapters(model)
            assert torch.allclose(_encode(model, x), unmerged, atol=1e-6)
        else:
            with pytest.raises(RuntimeError, match="cannot merge"):
                merge_adapters(model)


def test_remove_adapters_restores_the_base_exactly(case):
    model, case = case
    x = _images()
    names = {n for n, _ in model.sam.image_encoder.named_parameters()}
    with torch.no_grad():
        reference = _encode(model, x)
        inject_adapters(model.sam.image_encoder, case)
        _randomize_adapters(model)
        assert not torch.equal(_encode(model, x), reference)
        remove_adapters(model.sam.image_encoder)
        assert torch.equal(_encode(model, x), reference)
    assert {n for n, _ in model.sam.image_encoder.named_parameters()} == names
    inject_adapters(model.sam.image_encoder, case)  # and the encoder takes adapters again


def test_merge_and_unload_keeps_the_output_without_adapter_modules(case):
    model, case = case
    inject_adapters(model.sam.image_encoder, case)
    _randomize_adapters(model)
    x = _images(1)
    selection = MergeSelection(task=1) if case.kind == "tensor_lora" else None
    if kind_of(case).gated:  # a fixed gate pattern makes the gated update static
        for _, layer in adapter_layers(model):
            layer.fixed_gates = (torch.arange(layer.rank) % 2).float()
    with torch.no_grad():
        adapted = _encode(model, x, task=1)
        merge_and_unload(model.sam.image_encoder, selection)
        unloaded = _encode(model, x)
    assert torch.allclose(adapted, unloaded, atol=1e-5, rtol=1e-4)
    assert not list(adapter_layers(model))
    assert not any(is_adapter_param(n) for n, _ in model.named_parameters())


def test_one_merge_signature_for_every_kind():
    """A gate selection passed to a merge of LoRA is simply not needed (no TypeError)."""
    model = build_model("micro")
    inject_adapters(model.sam.image_encoder, LoraConfig(rank=2))
    _randomize_adapters(model)
    merge_adapters(model, MergeSelection(fixed_gates=torch.ones(2)))
    assert all(layer.merged for _, layer in adapter_layers(model))
    gated = build_model("micro")
    inject_adapters(gated.sam.image_encoder, GatedRankConfig(rank_low=1, rank_high=1))
    merge_adapters(gated, MergeSelection(fixed_gates=torch.tensor([1.0, 0.0])))
    assert all(layer.merged for _, layer in adapter_layers(gated))


def test_registry_rows_are_consistent():
    prefixes = [kind.layer.prefix for kind in ADAPTER_KINDS.values()]
    assert len(set(prefixes)) == len(prefixes)
    for name, kind in ADAPTER_KINDS.items():
        assert kind.config().kind == name
        assert parse_adapter_config({"kind": name}) == kind.config()
    with pytest.raises(ValueError, match="is not one of"):
        parse_adapter_config({"kind": "dora"})
    with pytest.raises(ValueError, match="unknown config key"):
        parse_adapter_config({"kind": "lora", "rank_low": 2})


def test_adapter_files_of_the_single_config_era_still_load(tmp_path):
    """Files written before each kind had its own config stored every kind's fields."""
    model = build_model("micro")
    cfg = GatedRankConfig(rank_low=2, rank_high=2)
    inject_adapters(model.sam.image_encoder, cfg)
    path = tmp_path / "new.safetensors"
    save_adapters(path, model.sam.image_encoder, cfg)
    tensors, meta = load_tensors(path, "adapter")
    old = {"kind": "gated_rank", "rank": 8, "rank_low": 2, "rank_high": 2, "alpha": 0.0}
    meta.pop("adapter_format")
    meta["adapter"] = old
    legacy = tmp_path / "legacy.safetensors"
    save_tensors(legacy, tensors, meta)
    assert load_adapters(legacy, build_model("micro").sam.image_encoder) == cfg


def test_gated_merge_with_fixed_gates_matches():
    cfg = CASES["gated"][1]
    model = build_model("micro")
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


def test_per_token_form_computes_what_the_folded_form_does():
    cfg = CASES["gated"][1]
    model = build_model("micro")
    inject_adapters(model.sam.image_encoder, cfg)
    _randomize_adapters(model)
    x = _images(1)
    layers = [layer for _, layer in adapter_layers(model)]
    with torch.no_grad():
        folded = model.encode(x)
        with per_token_form(model) as switched:
            assert switched == len(layers) and not any(g.fold_single_image for g in layers)
            per_token = model.encode(x)
    assert all(layer.fold_single_image for layer in layers)  # restored on the way out
    assert torch.allclose(folded, per_token, atol=1e-5, rtol=1e-4)
    with per_token_form(build_model("micro")) as switched:
        assert switched == 0  # nothing gated, nothing to switch


def test_closed_gates_equal_base_exactly():
    cfg = GatedRankConfig(rank_low=2, rank_high=6, gate_bias_init=-5.0)
    model = build_model("micro")
    x = _images()
    with torch.no_grad():
        reference = model.encode(x)
        inject_adapters(model.sam.image_encoder, cfg)
        _randomize_adapters(model)  # B != 0, but every gate is shut
        adapted = model.encode(x)
    assert torch.equal(reference, adapted)
    ranks = model.active_ranks()
    assert ranks and all(torch.equal(r, torch.zeros(2)) for r in ranks.values())


def test_gates_are_per_image_and_windows_follow_their_image():
    cfg = CASES["gated"][1]
    model = build_model("micro")
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
        inject_adapters(model.sam.image_encoder, LoraConfig(target_modules=("attn.nothing",)))
    with pytest.raises(ValueError, match="out of range"):
        inject_adapters(model.sam.image_encoder, LoraConfig(layers=(7,)))
    inject_adapters(model.sam.image_encoder, GatedRankConfig())
    with pytest.raises(ValueError, match="already has adapters"):
        inject_adapters(model.sam.image_encoder, GatedRankConfig())


def test_tensor_lora_tasks_differ_and_each_merges_exactly():
    model = build_model("micro")
    inject_adapters(model.sam.image_encoder, TensorLoraConfig(rank_in=2, rank_out=3, dropout=0.0))
    _randomize_adapters(model)
    x = _images(1)
    with torch.no_grad():
        per_task = [_encode(model, x, task) for task in range(3)]
        assert not torch.allclose(per_task[0], per_task[1])
        for task in range(3):
            merge_adapters(model, MergeSelection(task=task))
            merged = model.encode(x)  # merged layers skip the branch: no task needed
            unmerge_adapters(model)
            assert torch.allclose(merged, per_task[task], atol=1e-5, rtol=1e-4)
    with pytest.raises(RuntimeError, match="one task at a time"):
        merge_adapters(model)


def test_tensor_lora_batches_mix_tasks_per_image():
    """A multi-task batch repeats a frame per task; windowed blocks follow their image."""
    model = build_model("micro")
    inject_adapters(model.sam.image_encoder, TensorLoraConfig(rank_in=2, rank_out=2, dropout=0.0))
    _randomize_adapters(model)
    x = _images(1).repeat(3, 1, 1, 1)
    with torch.no_grad():
        set_tasks(model, torch.arange(3))
        batched = model.encode(x)
        singles = torch.cat([_encode(model, x[:1], task) for task in range(3)])
    assert torch.allclose(batched, singles, atol=1e-5)


def test_tensor_lora_parameters_grow_by_the_task_rank_only():
    counts = {}
    for tasks in (("a", "b"), ("a", "b", "c")):
        for sharing in ("tucker", "separate", "shared"):
            model = build_model("micro")
            cfg = TensorLoraConfig(tasks=tasks, sharing=sharing, rank_in=4, rank_out=4)
            inject_adapters(model.sam.image_encoder, cfg)
            counts[(len(tasks), sharing)] = mark_only_adapters_trainable(model)
    layers = 4  # qkv and proj of both blocks
    assert counts[(3, "tucker")] - counts[(2, "tucker")] == layers * cfg.rank_task
    assert counts[(3, "shared")] == counts[(2, "shared")]
    assert counts[(3, "separate")] == 1.5 * counts[(2, "separate")]
    assert counts[(3, "shared")] < counts[(3, "tucker")] < counts[(3, "separate")]


def test_orthogonality_penalty_is_zero_for_orthonormal_factors_and_differentiable():
    model = build_model("micro")
    inject_adapters(model.sam.image_encoder, TensorLoraConfig(rank_in=2, rank_out=2))
    layers = [m for m in model.modules() if hasattr(m, "tlora_G")]
    with torch.no_grad():
        for module in layers:
            for name in ("tlora_U1", "tlora_U2"):
                param = getattr(module, name)
                q, _ = torch.linalg.qr(torch.randn(max(param.shape), min(param.shape)))
                param.copy_(q if param.shape[0] >= param.shape[1] else q.t())
            module.tlora_G.copy_(torch.eye(2)[:, :, None].expand(2, 2, module.tlora_G.shape[-1]))
    assert float(orthogonality_penalty(model)) < 1e-5
    with torch.no_grad():
        for module in layers:
            module.tlora_G.normal_()
    penalty = orthogonality_penalty(model)
    assert float(penalty) > 0.1
    penalty.backward()
    assert all(m.tlora_G.grad is not None and m.tlora_G.grad.abs().sum() > 0 for m in layers)
