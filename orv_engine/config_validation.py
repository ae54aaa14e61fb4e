"""YAML -> nested dataclasses, with every key typed and checked before any work starts.

The one config path of every command (``orv-train``, ``orv-mv-train``, ``orv-vla-train``,
``orv-augment``, ``orv-filter``):

    config = load_config(MyConfig, "run.yaml", ["train.max_steps=10"])  # dotted key=value, YAML values
    config = config_from_dict(MyConfig, values, overrides)               # the same from a mapping
    config = load_config(MyConfig, "run.yaml", overrides, check=check_inputs)  # + a module's own step

1. the YAML file is read (:func:`read_yaml_mapping`) and the overrides set (:func:`apply_overrides`);
2. every key is checked against the dataclass tree (:func:`build_dataclass`): a typo
   (``max_stepz``), a wrong type (``max_steps: "many"``), a value outside a ``Literal`` or a
   non-mapping fails at once with the dotted key in the message;
3. each dataclass checks its own values in ``__post_init__`` (ranges, consistency between its
   fields) and raises :class:`ConfigError` naming the field; :func:`build_dataclass` puts the
   section's dotted path in front (``batch_size: ...`` -> ``train.batch_size: ...``).

Checks that need the file system (model folders, datasets) stay a separate step in each
config module (``check_inputs``, passed as ``check``), so that ``check_paths=False`` skips them.

Each field's explanation lives in ``field(metadata={"help": ...})`` (:func:`option`):
:func:`commented_yaml` writes it beside the key (``--write-config``) and :func:`describe_config`
lists every key with its type and default (the commands' ``--help``).

Hand-written because the candidates (pydantic, OmegaConf structured configs, draccus) would
add a dependency for ~200 lines, word their errors less directly, and (draccus) turn every key
into a command-line flag of its own.
"""

from __future__ import annotations

import dataclasses
import functools
import textwrap
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")


class ConfigError(ValueError):
    """A bad config; the message starts with the offending dotted key."""


def option(default=dataclasses.MISSING, *, help: str, factory=dataclasses.MISSING):  # noqa: A002
    """A dataclass field with its explanation in ``metadata["help"]`` (for ``--write-config``
    and ``--help``). ``factory`` for mutable defaults (lists, dicts, sections)."""
    return dataclasses.field(default=default, default_factory=factory, metadata={"help": help})


@functools.cache
def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _literal_choices(tp) -> tuple | None:
    """The choices of ``Literal[...]`` or ``Literal[...] | None`` (None included), else None."""
    if typing.get_origin(tp) is typing.Literal:
        return typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        literals = [a for a in args if a is not type(None)]
        if literals and all(typing.get_origin(a) is typing.Literal for a in literals):
            return tuple(c for a in literals for c in typing.get_args(a)) + ((None,) if type(None) in args else ())
    return None


def _choices_error(key: str, choices: tuple, value) -> ConfigError:
    names = ", ".join("null" if c is None else str(c) for c in choices)
    return ConfigError(f"{key}: must be one of {names}, got {value!r}")


def convert(value, tp, key: str):
    """``value`` checked against the annotation ``tp``; ints are accepted for floats."""
    origin = typing.get_origin(tp)
    choices = _literal_choices(tp)
    if choices is not None:
        if value not in choices:
            raise _choices_error(key, choices, value)
        return value
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
    """``cls(**values)`` with nested dataclasses built and every value type-checked; a
    :class:`ConfigError` of ``cls.__post_init__`` gets ``prefix`` in front of its key."""
    if not isinstance(values, dict):
        raise ConfigError(f"{prefix or 'the config'}: expected a mapping, got {type(values).__name__}")
    hints = _hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in values.items():
        dotted = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"{dotted}: unknown key (known here: {', '.join(names)})")
        kwargs[key] = convert(value, hints[key], dotted)
    try:
        return cls(**kwargs)
    except ConfigError as e:
        if not prefix:
            raise
        raise ConfigError(f"{prefix}.{e}") from None


def check_choices(obj) -> None:
    """The ``Literal`` fields of a dataclass instance hold one of their choices: YAML values
    are checked by :func:`convert`; this covers instances built in code (``__post_init__``)."""
    for f in dataclasses.fields(obj):
        tp = _hints(type(obj))[f.name]
        choices = _literal_choices(tp)
        if choices is not None and getattr(obj, f.name) not in choices:
            raise _choices_error(f.name, choices, getattr(obj, f.name))
        if typing.get_origin(tp) is list and _literal_choices(typing.get_args(tp)[0]) is not None:
            convert(getattr(obj, f.name), tp, f.name)


def check_range(obj, *names: str, low: float = 0, low_open: bool = True, high: float | None = None,
                high_open: bool = False) -> None:
    """Each named field (None is skipped) lies in the range; the message names the field:
    ``check_range(self, "batch_size")`` -> ``batch_size: must be > 0, got 0``."""
    for name in names:
        value = getattr(obj, name)
        if value is None:
            continue
        too_low = value <= low if low_open else value < low
        too_high = high is not None and (value >= high if high_open else value > high)
        if too_low or too_high:
            if high is None:
                raise ConfigError(f"{name}: must be {'>' if low_open else '>='} {low}, got {value}")
            raise ConfigError(f"{name}: must be in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}, "
                              f"got {value}")


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


# ---------------------------------------------------------------- the one config path


def config_from_dict(cls: type[T], values: dict | None, overrides=(),
                     check: typing.Callable[[T], None] | None = None) -> T:
    """``cls`` from a mapping (None: every default) with the ``key=value`` overrides set: keys
    and types checked, then every dataclass's ``__post_init__`` checks, then ``check(config)``
    (a config module's separate step, e.g. the paths a run reads)."""
    if values is not None and not isinstance(values, dict):
        raise ConfigError(f"the config must be a mapping of keys, got {type(values).__name__}")
    config = build_dataclass(cls, apply_overrides(values, overrides))
    if check is not None:
        check(config)
    return config


def load_config(cls: type[T], path: str | Path, overrides=(), check: typing.Callable[[T], None] | None = None) -> T:
    """``cls`` from the YAML file ``path`` with the ``key=value`` overrides set (see the module doc)."""
    return config_from_dict(cls, read_yaml_mapping(path), overrides, check)


# ---------------------------------------------------------------- help text: --write-config, --help


def field_help(f: dataclasses.Field) -> str:
    """The field's explanation on one line ("" if it has none)."""
    return " ".join(f.metadata.get("help", "").split())


def _describe_type(tp) -> str:
    choices = _literal_choices(tp)
    if choices is not None:
        return " | ".join("null" if c is None else str(c) for c in choices)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join("null" if a is type(None) else _describe_type(a) for a in typing.get_args(tp))
    if origin is list:
        return f"list[{_describe_type(typing.get_args(tp)[0])}]"
    if origin is dict or tp is dict:
        return "mapping"
    return "any" if tp is Any else _type_name(tp)


def _default(f: dataclasses.Field):
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return dataclasses.MISSING


def _flow(value, limit: int = 60) -> str:
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    elif isinstance(value, list):
        value = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for v in value]
    text = yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    text = text.removesuffix("...").strip().replace("\n", " ")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _keyline(head: str, note: str, width: int = 110) -> list[str]:
    if not note:
        return [head]
    if len(head) + len(note) + 4 <= width:
        return [f"{head}  # {note}"]
    return [head] + [f"      # {line}" for line in textwrap.wrap(note, width - 8)]


def describe_config(cls, prefix: str = "", names: typing.Iterable[str] | None = None) -> str:
    """Every key of ``cls`` (dotted; only ``names`` at the top if given), its type, default
    and help: the commands' ``--help``."""
    lines = []
    for f in dataclasses.fields(cls):
        if names is not None and f.name not in names:
            continue
        tp, key, note = _hints(cls)[f.name], prefix + f.name, field_help(f)
        item = typing.get_args(tp)[0] if typing.get_origin(tp) is list else None
        if dataclasses.is_dataclass(tp) or dataclasses.is_dataclass(item):
            key += "" if item is None else "[]"
            lines += _keyline(f"  {key}:", note)
            lines.append(describe_config(tp if item is None else item, f"{key}."))
            continue
        lines += _keyline(f"  {key}: {_describe_type(tp)} = {_flow(_default(f))}", note)
    return "\n".join(line for line in lines if line)


def config_epilog(cls, *more: str) -> str:
    """The ``--help`` epilog of a command configured by ``cls`` (with a RawDescriptionHelpFormatter);
    ``more``: lines after the keys."""
    head = "config keys (in the YAML file, or --set KEY=VALUE): type = default  # explanation"
    return "\n".join((head, describe_config(cls), *more))


class _BlockDumper(yaml.SafeDumper):
    """Multi-line strings as ``|`` blocks (prompts read as written)."""


_BlockDumper.add_representer(str, lambda dumper, value: dumper.represent_scalar(
    "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None))


def _emit(name: str, value, note: str, pad: str, width: int) -> list[str]:
    """``name: value`` as YAML lines at ``pad``, the note beside it (or above, when long)."""
    flow = None if isinstance(value, (list, dict)) else False  # None: [a, b] / {k: v} inline
    text = yaml.safe_dump({name: value}, sort_keys=False, width=10_000, default_flow_style=flow).rstrip("\n")
    if "\n" in text or len(pad) + len(text) > width:  # too long for one line: block style
        text = yaml.dump({name: value}, Dumper=_BlockDumper, sort_keys=False, width=width,
                         default_flow_style=False).rstrip("\n")
    lines = [pad + line if line.strip() else "" for line in text.splitlines()]
    if not note:
        return lines
    if len(lines) == 1 and len(lines[0]) + len(note) + 4 <= width:
        return [f"{lines[0]}  # {note}"]
    above = textwrap.wrap(note, width=max(40, width - len(pad) - 2))
    return [f"{pad}# {line}" for line in above] + lines


def commented_yaml(config, header: typing.Iterable[str] = (), width: int = 110) -> str:
    """``config`` (a dataclass instance) as YAML with each key's help as a comment: what
    ``--write-config`` writes. Reads back (:func:`build_dataclass`) as ``config``."""
    lines = [f"# {line}" for line in header]

    def emit(obj, indent: int) -> None:
        pad = "  " * indent
        for f in dataclasses.fields(obj):
            value, note = getattr(obj, f.name), field_help(f)
            if dataclasses.is_dataclass(value):
                lines.append(f"{pad}{f.name}:" + (f"  # {note}" if note else ""))
                emit(value, indent + 1)
                continue
            if isinstance(value, list):
                value = [dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for v in value]
            lines.extend(_emit(f.name, value, note, pad, width))

    emit(config, 0)
    return "\n".join(lines) + "\n"


def write_config(config, path: str | Path, comments: bool = False, header: typing.Iterable[str] = ()) -> Path:
    """``config`` as YAML at ``path`` (folders made); with ``comments`` every key explained."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = commented_yaml(config, header) if comments else \
        yaml.safe_dump(dataclasses.asdict(config), sort_keys=False, width=110)
    path.write_text(text)
    return path
