"""YAML -> nested dataclasses, with every key typed and checked before any work starts.

Shared by the training config (``orv-train``), the augmentation config (``orv-augment``)
and anything else configured from YAML. A typo (``max_stepz``), a wrong type
(``max_steps: "many"``) or a non-mapping fails at once with the dotted key in the message.
Hand-written because the candidates (pydantic, OmegaConf structured configs) would add a
dependency for ~100 lines and word their errors less directly.

    config = build_dataclass(MyConfig, yaml.safe_load(text))
    apply_overrides(values, ["train.max_steps=10"])   # dotted key=value, values parsed as YAML
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml


class ConfigError(ValueError):
    """A bad config; the message starts with the offending dotted key."""


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def convert(value, tp, key: str):
    """``value`` checked against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in (a for a in args if a is not type(None)):
            try:
                return convert(value, arg, key)
            except ConfigError:
                pass
        raise ConfigError(f"{key}: expected {' or '.join(_type_name(a) for a in args)}, got {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping of {tp.__name__} keys, got {value!r}")
        return build_dataclass(tp, value, key)
    if origin is typing.Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"{key}: expected one of {', '.join(map(repr, choices))}, got {value!r}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(tp)
        return [convert(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        args = typing.get_args(tp)
        if args:
            return {k: convert(v, args[1], f"{key}.{k}") for k, v in value.items()}
        return dict(value)
    if tp is dict or tp is list:
        if not isinstance(value, tp):
            raise ConfigError(f"{key}: expected a {'mapping' if tp is dict else 'list'}, got {value!r}")
        return value
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML reads "1e-4" (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {tp}")


def build_dataclass(cls, values: dict, prefix: str = ""):
    """``cls(**values)`` with nested dataclasses built and every value type-checked."""
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'the config'}: expected a mapping, got {type(values).__name__}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"{dotted}: unknown key (known here: {', '.join(names)})")
        kwargs[key] = convert(value, hints[key], dotted)
    return cls(**kwargs)


def set_dotted(tree: dict, dotted: str, value) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{dotted}: {part} is not a mapping")
        node = child
    node[parts[-1]] = value


def parse_overrides(overrides) -> list[tuple[str, Any]]:
    """``["a.b=3", "c=[x, y]"]`` -> ``[("a.b", 3), ("c", ["x", "y"])]`` (values parsed as YAML)."""
    out = []
    for item in overrides or ():
        if "=" not in item:
            raise ConfigError(f"--set {item!r}: expected key=value (e.g. train.max_steps=100)")
        key, raw = item.split("=", 1)
        out.append((key.strip(), yaml.safe_load(raw) if raw.strip() else ""))
    return out


def apply_overrides(values: dict, overrides) -> dict:
    """A deep copy of ``values`` with the dotted ``key=value`` overrides set."""
    values = yaml.safe_load(yaml.safe_dump(values or {}))
    for key, value in parse_overrides(overrides):
        set_dotted(values, key, value)
    return values


def read_yaml_mapping(path: str | Path) -> dict:
    """The top-level mapping of a YAML file; errors name the file."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    try:
        values = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ConfigError(f"{path}: the config must be a mapping of keys, got {type(values).__name__}")
    return values
