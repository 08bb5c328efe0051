"""Typed loading of the frozen config dataclasses: dicts, YAML files and dotted overrides.

The dataclasses in :mod:`ranksam_ros.config` hold every default; this module only turns
user input (YAML, ``--set key=value``, ROS parameters) into instances of them, refusing
unknown keys and values of the wrong type with an error that names the field.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _float_text(text: str, where: str) -> float:
    """``5e-4`` as a float: YAML 1.1 (PyYAML) reads exponents without a dot as strings."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: expected a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: expected a finite number, got {text!r}")
    return value


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` to the annotated type ``tp`` or raise ``ValueError`` naming ``where``."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        tagged = _by_kind(value, args, where)
        if tagged is not None:
            return from_dict(tagged, value, where)
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ValueError as exc:
                errors.append(str(exc))
        raise ValueError(f"{where}: {value!r} matches none of {args}: {'; '.join(errors)}")
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping for {_type_name(tp)}, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (tuple, list):
        if isinstance(value, str) or not isinstance(value, (list, tuple)):
            raise ValueError(f"{where}: expected a list, got {value!r}")
        if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if origin is tuple:
            if len(value) != len(args):
                raise ValueError(f"{where}: expected {len(args)} items, got {len(value)}")
            return tuple(
                _coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args))
            )
        return [_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ValueError(f"{where}: expected a mapping, got {value!r}")
        return {str(k): _coerce(v, args[1], f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ValueError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):
            value = _float_text(value, where)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ValueError(f"{where}: expected a string, got {value!r}")
        return value
    raise ValueError(f"{where}: unsupported annotation {tp!r}")


def _by_kind(value: Any, args: tuple, where: str) -> type | None:
    """The member of a union of dataclasses whose ``kind`` default equals ``value['kind']``.

    Unions of configs told apart by a ``kind`` field (adapter kinds) give an error that names
    the kinds instead of every member's complaint. None when the union is not of that form.
    """
    members = [a for a in args if dataclasses.is_dataclass(a)]
    kinds = {}
    for member in members:
        field = next((f for f in dataclasses.fields(member) if f.name == "kind"), None)
        if field is None:
            return None
        kinds[field.default] = member
    if not kinds or not isinstance(value, dict) or "kind" not in value:
        return None
    if value["kind"] not in kinds:
        raise ValueError(f"{where}.kind={value['kind']!r} is not one of {', '.join(kinds)}")
    return kinds[value["kind"]]


def from_dict(cls: type[T], data: dict[str, Any], where: str = "") -> T:
    """Build dataclass ``cls`` from a (nested) mapping; unknown keys raise ``ValueError``.

    Args:
        cls: A dataclass type.
        data: Mapping of field names to values; missing fields keep their defaults.
        where: Dotted prefix used in error messages.

    Returns:
        An instance of ``cls`` whose ``__post_init__`` validation has run.
    """
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - names)
    if unknown:
        prefix = f"{where}." if where else ""
        raise ValueError(
            f"unknown config key(s) {', '.join(prefix + k for k in unknown)}; "
            f"allowed in {_type_name(cls)}: {', '.join(sorted(names))}"
        )
    kwargs = {}
    for name, value in data.items():
        field_where = f"{where}.{name}" if where else name
        kwargs[name] = _coerce(value, hints[name], field_where)
    return cls(**kwargs)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain, YAML/JSON-friendly dict of a config dataclass (tuples become lists)."""

    def plain(value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            return [plain(v) for v in value]
        if isinstance(value, dict):
            return {k: plain(v) for k, v in value.items()}
        return value

    return plain(dataclasses.asdict(cfg))


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.c = value`` inside nested dicts, creating levels as needed."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ValueError(f"cannot set {key}: {part} is not a mapping")
        node = child
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """Split ``key=value``; the value is parsed as YAML (``3``, ``0.5``, ``[1,2]``, ``null``)."""
    if "=" not in text:
        raise ValueError(f"override {text!r} must look like key=value")
    key, raw = text.split("=", 1)
    key = key.strip()
    if not key:
        raise ValueError(f"override {text!r} has an empty key")
    return key, yaml.safe_load(raw) if raw.strip() else ""


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping; an empty file is an empty mapping."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    with path.open() as handle:
        data = yaml.safe_load(handle)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{path}: top level must be a mapping, got {type(data).__name__}")
    return data


def load_config(
    cls: type[T],
    path: str | Path | None = None,
    overrides: typing.Iterable[str] = (),
    base: dict[str, Any] | None = None,
) -> T:
    """Defaults of ``cls`` <- ``base`` <- YAML file <- ``key=value`` overrides.

    Args:
        cls: Config dataclass to build.
        path: Optional YAML file.
        overrides: ``dotted.key=value`` strings (values parsed as YAML).
        base: Optional mapping applied before the file.

    Returns:
        The validated config instance.
    """
    data: dict[str, Any] = dict(base or {})
    if path is not None:
        for key, value in load_yaml(path).items():
            data[key] = value
    for text in overrides:
        key, value = parse_override(text)
        set_dotted(data, key, value)
    return from_dict(cls, data)
