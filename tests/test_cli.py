"""The ``ranksam`` argument parser: flags generated from option dataclasses, typos refused."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

import pytest

from ranksam_ros.bench.options import BenchOptions
from ranksam_ros.cli import build_parser
from ranksam_ros.cli_options import add_dataclass_flags, comma_list, dataclass_from_args
from ranksam_ros.config import CAMVID_CLASSES
from ranksam_ros.eval.options import EvalOptions


def _parse_error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(actions[0].choices)


def test_no_parser_accepts_abbreviated_flags(capsys):
    parser = build_parser()
    commands = _subparsers(parser)
    assert {"eval", "bench", "export", "train", "demo", "make-bag", "trt-check"} <= set(commands)
    assert not parser.allow_abbrev
    assert [name for name, sub in commands.items() if sub.allow_abbrev] == []
    # --mode used to be read as --model.
    err = _parse_error(["eval", "--data", "d", "--mode", "x"], capsys)
    assert "unrecognized arguments: --mode x" in err


@pytest.mark.parametrize(
    ("argv", "allowed"),
    [
        (["eval", "--data", "d", "--prompts", "boxes"], ("box", "point", "auto", "grid")),
        (["eval", "--data", "d", "--backend", "tflite"], ("torch", "onnxruntime", "tensorrt")),
        (["eval", "--data", "d", "--degrade", "rain"], ("noise", "motion", "mixed")),
        (["export", "--out", "o", "--precision", "fp8"], ("fp32", "fp16", "int8")),
        (["bench", "--bag", "b", "--input-reliability", "sure"], ("best_effort", "reliable")),
        (["build-engine", "--export", "e", "--precision", "int4"], ("fp16", "fp32")),
    ],
)
def test_an_invalid_choice_names_the_allowed_ones(argv, allowed, capsys):
    err = _parse_error(argv, capsys)
    assert "invalid choice" in err and all(name in err for name in allowed)


def test_list_flags_check_each_item(capsys):
    err = _parse_error(["eval", "--data", "d", "--severities", "4,9"], capsys)
    assert "argument --severities: each must be one of 1, 2, 3, 4, 5" in err
    err = _parse_error(["bench", "--bag", "b", "--rates", "5,fast"], capsys)
    assert "argument --rates: takes comma-separated numbers" in err


def test_eval_flags_build_eval_options(tmp_path):
    names = ("void", "thing")
    yaml_file = tmp_path / "data.yaml"
    yaml_file.write_text(
        "class_names: [void, thing]\nnum_classes: 2\nignore_label: 255\nthing_classes: []\n"
    )
    argv = ["eval", "--data", "d", "--sequences", "0006R0,0016E5", "--set", "a=1", "--set", "b=2"]
    args = build_parser().parse_args([*argv, "--data-config", str(yaml_file), "--tta", "flip"])
    options = dataclass_from_args(EvalOptions, args)
    assert options.sequences == ("0006R0", "0016E5")
    assert options.pipeline_overrides == ("a=1", "b=2")
    assert options.dataset.class_names == names and options.dataset.ignore_label == 255
    assert options.backend_config().tta == "flip"
    defaults = dataclass_from_args(EvalOptions, build_parser().parse_args(["eval", "--data", "d"]))
    assert defaults == EvalOptions(data="d")
    assert defaults.dataset.class_names == CAMVID_CLASSES


def test_a_bad_data_config_names_the_key(tmp_path):
    yaml_file = tmp_path / "data.yaml"
    yaml_file.write_text("class_name: [a]\n")
    args = build_parser().parse_args(["eval", "--data", "d", "--data-config", str(yaml_file)])
    with pytest.raises(ValueError, match="unknown config key.*class_name"):
        dataclass_from_args(EvalOptions, args)


def test_bench_flags_keep_their_meaning():
    argv = "bench --bag b.mcap --rates 5,10 --set model=m adapter=gated --no-fastdds-profile"
    options = dataclass_from_args(BenchOptions, build_parser().parse_args(argv.split()))
    assert options.rates == (5.0, 10.0) and options.overrides == ("model=m", "adapter=gated")
    assert options.fastdds_profile is False and options.node_pid is None
    plain = dataclass_from_args(BenchOptions, build_parser().parse_args(["bench", "--bag", "b"]))
    assert plain == BenchOptions(bag="b")


@dataclass
class _Sample:
    name: str
    ratio: float = field(default=0.5, metadata={"help": "a share"})
    tags: tuple[str, ...] = ()
    hidden: int = field(default=3, metadata={"cli": False})


def test_helper_maps_fields_to_flags_and_back():
    parser = argparse.ArgumentParser(allow_abbrev=False)
    add_dataclass_flags(parser, _Sample)
    assert "--hidden" not in parser.format_help() and "a share" in parser.format_help()
    args = parser.parse_args(["--name", "n", "--tags", "a,b", "--ratio", "0.25"])
    assert dataclass_from_args(_Sample, args, hidden=7) == _Sample("n", 0.25, ("a", "b"), 7)
    with pytest.raises(SystemExit):
        parser.parse_args(["--tags", "a"])  # --name has no default: required


def test_helper_refuses_flags_it_cannot_express():
    @dataclass
    class OnByDefault:
        colour: bool = True

    with pytest.raises(TypeError, match="colour defaults to true: its flag must be --no-"):
        add_dataclass_flags(argparse.ArgumentParser(), OnByDefault)
    with pytest.raises(argparse.ArgumentTypeError, match="at least one"):
        comma_list(int)(" , ")
