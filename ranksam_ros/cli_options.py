"""Command-line flags from option dataclasses: defaults, choices and help are written once.

:func:`add_dataclass_flags` adds one ``--field-name`` flag per field of an options dataclass
and :func:`dataclass_from_args` builds the dataclass back from the parsed namespace. The
field's annotation gives the type, its default the default, and
``dataclasses.field(metadata=...)`` the rest:

``help``, ``choices``, ``metavar``
    As in argparse (for list fields, ``choices`` checks every item).
``flag``
    An option string other than ``--field-name`` (e.g. ``--set``, ``--no-fastdds-profile``).
``required``
    The flag must be given although the field has a default (for Python callers).
``action``
    ``append`` or ``extend``: a repeatable list of strings (``--set a=1 --set b=2``,
    ``--set a=1 b=2``) instead of one comma-separated value.
``cli``
    ``False`` keeps the field off the command line.

Annotations understood: ``str``, ``int``, ``float``, ``X | None``, ``bool`` (``store_true``;
a field defaulting to true needs a ``--no-...`` flag, which stores false), ``tuple[T, ...]``
(one comma-separated value: ``--rates 5,10``) and config dataclasses (the path of a YAML file
of their keys, read by :func:`ranksam_ros.config_loader.load_config` when the dataclass is
built, so a bad file is reported like any other config error).
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

from ranksam_ros.config_loader import load_config

T = TypeVar("T")
LIST_ACTIONS = ("append", "extend")
_ITEM_WORDS = {int: "integers", float: "numbers", str: "names"}


def comma_list(item_type: type, choices: Sequence | None = None) -> Callable[[str], tuple]:
    """Argparse type of a comma-separated list: ``"4,5"`` -> ``(4, 5)``.

    Args:
        item_type: ``int``, ``float`` or ``str``.
        choices: When given, every item must be one of them.

    Returns:
        A parser raising ``argparse.ArgumentTypeError`` (shown after the flag's name) for
        an empty list, an item of the wrong type or one outside ``choices``.
    """
    words = _ITEM_WORDS[item_type]

    def parse(text: str) -> tuple:
        try:
            values = tuple(item_type(part.strip()) for part in text.split(",") if part.strip())
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"takes comma-separated {words} (like {_example(item_type)}), got {text!r}"
            ) from None
        if not values:
            raise argparse.ArgumentTypeError(f"takes at least one of the comma-separated {words}")
        if choices is not None and any(v not in choices for v in values):
            allowed = ", ".join(map(str, choices))
            raise argparse.ArgumentTypeError(f"each must be one of {allowed}, got {text!r}")
        return values

    parse.__name__ = f"comma-separated {words}"  # argparse names the type in some errors
    return parse


def add_dataclass_flags(parser: argparse.ArgumentParser, cls: type) -> None:
    """Add a flag for every command-line field of the dataclass ``cls`` (see module doc)."""
    hints = typing.get_type_hints(cls)
    for item in _cli_fields(cls):
        flag = item.metadata.get("flag", "--" + item.name.replace("_", "-"))
        kwargs = _flag_kwargs(item, hints[item.name], flag)
        parser.add_argument(flag, dest=item.name, help=item.metadata.get("help"), **kwargs)


def dataclass_from_args(cls: type[T], args: argparse.Namespace, **extra: Any) -> T:
    """Build ``cls`` from a namespace parsed with :func:`add_dataclass_flags` flags.

    Args:
        cls: The dataclass.
        args: Parsed arguments (attributes that are no field of ``cls`` are ignored).
        **extra: Values of fields kept off the command line.

    Raises:
        ValueError, FileNotFoundError: a config file given for a nested config is bad, or
            the dataclass's own checks refuse a value.
    """
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for item in _cli_fields(cls):
        value = getattr(args, item.name)
        tp = _without_none(hints[item.name])
        if value is None and (_is_list_action(item) or dataclasses.is_dataclass(tp)):
            continue  # not given: the field's own default
        if dataclasses.is_dataclass(tp):
            value = load_config(tp, value)
        elif isinstance(value, list):
            value = tuple(value)
        values[item.name] = value
    return cls(**values, **extra)


def _cli_fields(cls: type) -> Iterator[dataclasses.Field]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    return (f for f in dataclasses.fields(cls) if f.init and f.metadata.get("cli", True))


def _flag_kwargs(item: dataclasses.Field, annotation: Any, flag: str) -> dict[str, Any]:
    """``add_argument`` keywords of one field, from its annotation, default and metadata."""
    meta, tp = item.metadata, _without_none(annotation)
    default = _default(item)
    kwargs: dict[str, Any] = {"metavar": meta["metavar"]} if "metavar" in meta else {}
    if meta.get("required") or default is dataclasses.MISSING:
        kwargs["required"] = True
    else:
        kwargs["default"] = default
    if tp is bool:
        if default and not flag.startswith("--no-"):
            raise TypeError(f"{item.name} defaults to true: its flag must be --no-...")
        return {**kwargs, "action": "store_false" if default else "store_true"}
    if dataclasses.is_dataclass(tp):
        return {**kwargs, "default": None}  # a YAML path, read in dataclass_from_args
    if typing.get_origin(tp) is tuple:
        item_type = typing.get_args(tp)[0]
        if _is_list_action(item):
            nargs = {"nargs": "+"} if meta["action"] == "extend" else {}
            return {**kwargs, "action": meta["action"], "type": item_type, "default": None, **nargs}
        return {**kwargs, "type": comma_list(item_type, meta.get("choices"))}
    if tp not in (str, int, float):
        raise TypeError(f"{item.name}: no command-line flag for {annotation!r}")
    if "choices" in meta:
        kwargs["choices"] = meta["choices"]
    return {**kwargs, "type": tp}


def _is_list_action(item: dataclasses.Field) -> bool:
    action = item.metadata.get("action")
    if action is not None and action not in LIST_ACTIONS:
        raise TypeError(f"{item.name}: action must be one of {LIST_ACTIONS}, got {action!r}")
    return action is not None


def _default(item: dataclasses.Field) -> Any:
    if item.default is not dataclasses.MISSING:
        return item.default
    if item.default_factory is not dataclasses.MISSING:
        return item.default_factory()
    return dataclasses.MISSING


def _without_none(annotation: Any) -> Any:
    """``X`` of ``X | None`` (and of ``Optional[X]``); other annotations unchanged."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return annotation


def _example(item_type: type) -> str:
    return {int: "4,5", float: "2,5,10", str: "a,b"}[item_type]
