"""ROS parameters declared from the :class:`NodeConfig` dataclass (never by hand).

Every leaf field becomes a dotted parameter (``pipeline.prompts.threshold``) with the
dataclass default; reading them back goes through the same typed loader as YAML, so unknown
or ill-typed values fail with the field's name. Parameters that pick the model or the topics
only take effect on the next configure; changing them while active is rejected with a reason.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor, ParameterType, SetParametersResult
from rclpy.exceptions import ParameterUninitializedException
from rclpy.parameter import Parameter

from ranksam_ros.config_loader import from_dict, set_dotted, to_dict
from ranksam_ros.node_config import NodeConfig

# Parameters read at configure time only (model, engine, topics, QoS).
STATIC_PREFIXES = (
    "model",
    "adapter",
    "prompt_adapter",
    "precision",
    "export_if_missing",
    "backend",
    "threads",
    "tta",
    "cameras",
    "input.transport",
    "input.reliability",
    "input.depth",
    "output.reliability",
    "output.depth",
    "output.label_image",
    "output.semantic",
    "depth.enabled",  # subscriptions and ~/points are made at configure
    "depth.buffer",
    "depth.points",
)

_ARRAY_TYPES = {
    str: ParameterType.PARAMETER_STRING_ARRAY,
    int: ParameterType.PARAMETER_INTEGER_ARRAY,
    float: ParameterType.PARAMETER_DOUBLE_ARRAY,
}
_SCALAR_TYPES = {
    bool: ParameterType.PARAMETER_BOOL,
    int: ParameterType.PARAMETER_INTEGER,
    float: ParameterType.PARAMETER_DOUBLE,
    str: ParameterType.PARAMETER_STRING,
}


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"a": {"b": 1}}`` -> ``{"a.b": 1}``."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def _leaf_types(cls: type, prefix: str = "") -> dict[str, Any]:
    types: dict[str, Any] = {}
    hints = typing.get_type_hints(cls)
    for item in dataclasses.fields(cls):
        tp = hints[item.name]
        if dataclasses.is_dataclass(tp):
            types.update(_leaf_types(tp, f"{prefix}{item.name}."))
        else:
            types[f"{prefix}{item.name}"] = tp
    return types


def parameter_type(tp: Any) -> int:
    """The ROS parameter type of a config annotation."""
    if typing.get_origin(tp) in (tuple, list):
        return _ARRAY_TYPES[typing.get_args(tp)[0]]
    if typing.get_origin(tp) in (typing.Union, types.UnionType):  # X | None: unset allowed
        (tp,) = [arg for arg in typing.get_args(tp) if arg is not type(None)]
    return _SCALAR_TYPES[tp]


def declare_parameters(node, defaults: NodeConfig | None = None) -> None:
    """Declare one parameter per config leaf with its default and type."""
    defaults = defaults or NodeConfig()
    types = _leaf_types(NodeConfig)
    for name, value in flatten(to_dict(defaults)).items():
        ptype = parameter_type(types[name])
        descriptor = ParameterDescriptor(
            type=ptype,
            description=f"NodeConfig.{name}"
            + (" (applies at configure)" if is_static(name) else ""),
            # A YAML `2` for a double would otherwise be refused; the typed loader checks it.
            dynamic_typing=ptype == ParameterType.PARAMETER_DOUBLE,
        )
        if value is None and descriptor.dynamic_typing:
            pass  # an unset optional number: declared NOT_SET, read back as None
        elif value is None or (isinstance(value, (list, tuple)) and not value):
            # rclpy would type an empty list as a byte array; declare the array type instead.
            value = Parameter.Type(ptype)
        elif isinstance(value, (list, tuple)):
            value = list(value)
        node.declare_parameter(name, value, descriptor)


def declared_names() -> list[str]:
    """The dotted name of every parameter :func:`declare_parameters` declares."""
    return list(flatten(to_dict(NodeConfig())))


def unknown_overrides(node) -> list[str]:
    """Parameters given to ``node`` (params file, ``-p``, overrides) that it never declared.

    rclpy silently ignores such overrides, so a typo (``modle:=x``) would run with defaults.
    Call after every parameter is declared.
    """
    # rclpy keeps the overrides a node starts with in Node._parameter_overrides (name ->
    # Parameter) and offers no public accessor for them. An rclpy without that attribute
    # cannot be checked: report nothing rather than fail.
    overrides = getattr(node, "_parameter_overrides", None) or {}
    return sorted(name for name in overrides if not node.has_parameter(name))


def unknown_parameters_message(unknown: list[str]) -> str:
    """``unknown parameter 'modle' (closest declared: 'model'), ...`` for an error log."""
    declared = declared_names()
    named = []
    for name in unknown:
        closest = difflib.get_close_matches(name, declared, n=1, cutoff=0.0)
        named.append(f"{name!r} (closest declared: {closest[0]!r})" if closest else repr(name))
    return (
        f"unknown parameter{'s' if len(unknown) > 1 else ''} {', '.join(named)}: "
        "not a NodeConfig field, it would be ignored (see config/ranksam.yaml)"
    )


def is_static(name: str) -> bool:
    return any(name == p or name.startswith(f"{p}.") for p in STATIC_PREFIXES)


def config_from_values(values: dict[str, Any]) -> NodeConfig:
    """Dotted name -> value mapping (from ROS) to a validated :class:`NodeConfig`."""
    data: dict[str, Any] = {}
    for name, value in values.items():
        if value is None:  # declared empty or unset and never set: keep the default
            continue
        set_dotted(data, name, list(value) if isinstance(value, (list, tuple)) else value)
    return from_dict(NodeConfig, data)


def current_values(node) -> dict[str, Any]:
    """Dotted name -> value of every config parameter (None for unset empty arrays)."""
    values = {}
    for name in declared_names():
        try:
            values[name] = node.get_parameter(name).value
        except ParameterUninitializedException:
            values[name] = None
    return values


def read_config(node) -> NodeConfig:
    """The node's current parameters as a :class:`NodeConfig` (ValueError names bad fields)."""
    return config_from_values(current_values(node))


def check_update(
    node, parameters: list, active: bool
) -> tuple[SetParametersResult, NodeConfig | None]:
    """Validate a parameter change: types and ranges always, static ones only while inactive.

    Returns:
        The verdict and, when accepted, the config the change leads to.
    """
    values = current_values(node)
    for param in parameters:
        if param.name not in values:
            continue
        if active and is_static(param.name):
            reason = f"{param.name} applies at configure: deactivate and clean up first"
            return SetParametersResult(successful=False, reason=reason), None
        values[param.name] = param.value
    try:
        cfg = config_from_values(values)
    except ValueError as exc:
        return SetParametersResult(successful=False, reason=str(exc)), None
    return SetParametersResult(successful=True), cfg
