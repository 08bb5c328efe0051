"""The shipped params file and launch file: keys valid, arguments documented, syntax sound."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import yaml

from ranksam_ros.config_loader import from_dict
from ranksam_ros.node_config import NodeConfig

ROOT = Path(__file__).resolve().parents[2]


def test_params_file_matches_the_node_config():
    data = yaml.safe_load((ROOT / "config/ranksam.yaml").read_text())
    params = data["/**"]["ros__parameters"]
    cfg = from_dict(NodeConfig, params)  # unknown keys or wrong types would raise here
    assert cfg == NodeConfig(), "config/ranksam.yaml should document the defaults"


def _launch_arguments() -> list[str]:
    tree = ast.parse((ROOT / "launch/ranksam.launch.py").read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ARGUMENTS":
            return [key.value for key in node.value.keys]
    raise AssertionError("ARGUMENTS table not found")


def test_launch_arguments_are_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    for name in _launch_arguments():
        assert f"`{name}`" in readme, f"launch argument {name} missing from README"


def test_launch_file_builds_a_description():
    pytest.importorskip("launch_ros")  # real ROS installs only; the PyPI `launch` is unrelated
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "ranksam_launch", ROOT / "launch/ranksam.launch.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    names = {a.name for a in description.get_launch_arguments()}
    assert names == set(_launch_arguments())


def test_an_unset_optional_parameter_reads_back_unset_and_takes_a_number(ros_context):
    from rclpy.node import Node
    from rclpy.parameter import Parameter

    from ranksam_ros.ros.params import declare_parameters, read_config

    node = Node("optional_params", context=ros_context)
    try:
        declare_parameters(node)
        # unset: the model's calibrated box cut applies (PipelineConfig.for_model)
        assert read_config(node).pipeline.box_mask_threshold is None
        results = node.set_parameters([Parameter("pipeline.box_mask_threshold", value=-2)])
        assert results[0].successful
        assert read_config(node).pipeline.box_mask_threshold == -2.0
    finally:
        node.destroy_node()
