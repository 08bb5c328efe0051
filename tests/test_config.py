from __future__ import annotations

import pytest

from ranksam_ros.adapters.gated_rank import GatedRankConfig
from ranksam_ros.config import BackendConfig
from ranksam_ros.config_loader import from_dict, load_config, parse_override, to_dict
from ranksam_ros.node_config import NodeConfig
from ranksam_ros.train.config import SAM_PARTS, TrainConfig


def test_defaults_round_trip_through_dict():
    cfg = TrainConfig()
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg


def test_unknown_key_names_the_field():
    with pytest.raises(ValueError, match=r"optim\.stepz"):
        from_dict(TrainConfig, {"optim": {"stepz": 3}})
    with pytest.raises(ValueError, match="unknown config key"):
        from_dict(TrainConfig, {"bogus": 1})


def test_wrong_types_are_rejected():
    with pytest.raises(ValueError, match=r"optim\.steps: expected an integer"):
        from_dict(TrainConfig, {"optim": {"steps": "many"}})
    with pytest.raises(ValueError, match="expected true/false"):
        from_dict(TrainConfig, {"data": {"flip": "yes"}})
    with pytest.raises(ValueError, match="expected a list"):
        from_dict(GatedRankConfig, {"target_modules": "attn.qkv"})


def test_range_checks():
    with pytest.raises(ValueError, match="adapter.kind='dora' is not one of"):
        from_dict(TrainConfig, {"adapter": {"kind": "dora"}})
    with pytest.raises(ValueError, match="adapter.hierarchy"):
        from_dict(TrainConfig, {"adapter": {"kind": "gated_rank", "hierarchy": "deep"}})
    with pytest.raises(ValueError, match="unknown config key"):
        from_dict(TrainConfig, {"adapter": {"kind": "lora", "rank_low": 2}})
    with pytest.raises(ValueError, match="freeze entry='decoder'"):
        TrainConfig(freeze=("decoder",))
    with pytest.raises(ValueError, match="nothing to train"):
        TrainConfig(freeze=SAM_PARTS)
    with pytest.raises(ValueError, match="clean_prob"):
        from_dict(TrainConfig, {"data": {"degrade": {"clean_prob": 2.0}}})
    for bad in ([6], [], [0, 1]):
        with pytest.raises(ValueError, match=r"degrade\.severities"):
            from_dict(TrainConfig, {"data": {"degrade": {"severities": bad}}})
    heavy = from_dict(TrainConfig, {"data": {"degrade": {"severities": [4, 5]}}})
    assert heavy.data.degrade.severities == (4, 5)


def test_backend_config_names_the_allowed_engines():
    with pytest.raises(ValueError, match="backend='tflite' is not one of torch, onnxruntime"):
        BackendConfig(backend="tflite")
    with pytest.raises(ValueError, match="threads must be >= 0, got -1"):
        BackendConfig(threads=-1)
    with pytest.raises(ValueError, match="backend='tflite'"):
        NodeConfig(backend="tflite")  # the node's flat parameters are checked the same way
    assert NodeConfig().backend_config() == BackendConfig(adapter="gated")


def test_yaml_then_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stage: adapter\nadapter:\n  kind: lora\n  rank: 4\noptim:\n  steps: 10\n")
    cfg = load_config(
        TrainConfig, path, ["optim.steps=20", "adapter.layers=[1, 2]", "loss.iou_weight=0.5"]
    )
    assert cfg.adapter.kind == "lora" and cfg.adapter.rank == 4
    assert cfg.optim.steps == 20 and cfg.adapter.layers == (1, 2) and cfg.loss.iou_weight == 0.5


def test_exponent_notation_reads_as_a_number(tmp_path):
    # PyYAML reads "5e-4" (no dot) as a string; a float field still takes it.
    path = tmp_path / "lr.yaml"
    path.write_text("optim:\n  lr: 5e-4\n")
    assert load_config(TrainConfig, path, ["optim.weight_decay=1e-2"]).optim.lr == 5e-4
    with pytest.raises(ValueError, match=r"optim\.lr: expected a number"):
        load_config(TrainConfig, None, ["optim.lr=fast"])
    with pytest.raises(ValueError, match="finite"):
        load_config(TrainConfig, None, ["optim.lr=nan"])


def test_override_syntax_and_missing_file(tmp_path):
    assert parse_override("a.b=[1,2]") == ("a.b", [1, 2])
    with pytest.raises(ValueError, match="key=value"):
        parse_override("novalue")
    with pytest.raises(FileNotFoundError):
        load_config(TrainConfig, tmp_path / "missing.yaml")
    bad = tmp_path / "list.yaml"
    bad.write_text("- 1\n- 2\n")
    with pytest.raises(ValueError, match="top level must be a mapping"):
        load_config(TrainConfig, bad)


def test_shipped_training_configs_load():
    from pathlib import Path

    configs = sorted(Path(__file__).resolve().parents[1].glob("config/train/*.yaml"))
    assert configs
    for path in configs:
        load_config(TrainConfig, path)


def test_portable_paths_strip_machine_specific_prefixes(tmp_path):
    import tempfile
    from pathlib import Path

    from ranksam_ros.reporting import portable_paths

    root = tmp_path / "repo"
    temp_bag = str(Path(tempfile.gettempdir()) / "tmpabc" / "demo.mcap")
    report = {
        "plots": [str(root / "docs" / "figures" / "a.png")],
        "data": str(tmp_path / "shared" / "camvid" / "val"),
        "meta": {"bag": temp_bag, "topic": "/camera/image_raw", "other": "/opt/x.xml"},
    }
    assert portable_paths(report, root) == {
        "plots": ["docs/figures/a.png"],
        "data": "../shared/camvid/val",
        "meta": {"bag": "demo.mcap", "topic": "/camera/image_raw", "other": "/opt/x.xml"},
    }


def test_adapter_tables_of_each_protocol_get_their_own_name():
    from ranksam_ros.reporting import adapter_results_name

    names = {
        adapter_results_name(prompts, levels)
        for prompts in ("box", "point")
        for levels in ((1, 2, 3), (4, 5))
    }
    assert names == {"adapters", "adapters_s45", "adapters_point", "adapters_point_s45"}


def test_prompt_adapter_stacks_on_the_encoder_adapter():
    node = NodeConfig(adapter="gated", prompt_adapter="pa_sam")
    assert node.backend_config().adapter_spec == "gated+pa_sam"
    assert BackendConfig(adapter="none", prompt_adapter="pa_sam").adapter_spec == "pa_sam"
    assert BackendConfig().adapter_spec == "none"
    with pytest.raises(ValueError, match="prompt_adapter names one decoder set"):
        BackendConfig(prompt_adapter="pa_sam+other")


def test_int8_precision_is_an_onnxruntime_choice():
    node = NodeConfig(backend="onnxruntime", precision="int8")
    assert node.backend_config().precision == "int8"
    with pytest.raises(ValueError, match="precision int8 runs on the onnxruntime backend"):
        NodeConfig(backend="torch", precision="int8")
    with pytest.raises(ValueError, match="precision"):
        BackendConfig(backend="onnxruntime", precision="fp8")
