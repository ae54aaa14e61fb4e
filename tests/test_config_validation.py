"""The one config path (orv_engine.config_validation) and the help text every command shows."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Literal

import pytest
import yaml

from augment.config import AugmentConfig
from filtering.config import FilterConfig
from orv_engine.config_validation import (ConfigError, build_dataclass, check_choices, check_range,
                                          commented_yaml, config_from_dict, describe_config, load_config, option)
from orv_engine.training.config_mv import MultiViewConfig
from vla_finetune.training.config import VLAConfig


@dataclass
class Inner:
    mode: Literal["a", "b"] = option("a", help="a or b")
    size: int = option(1, help="a size\nover two lines")

    def __post_init__(self):
        check_choices(self)
        check_range(self, "size")


@dataclass
class Outer:
    name: str = option("x", help="the name")
    pick: Literal["p", "q"] | None = option(None, help="p, q or null")
    inner: Inner = option(factory=Inner, help="a section")
    items: list[Inner] = option(factory=list, help="a list of sections")
    text: str = option("first line\nsecond line\n", help="a multi-line string")


def test_load_config_reads_overrides_and_checks(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: y\ninner: {mode: b}\n")
    config = load_config(Outer, path, ["inner.size=3", "pick=q"])
    assert config == Outer(name="y", pick="q", inner=Inner(mode="b", size=3))
    assert config_from_dict(Outer, None) == Outer()
    with pytest.raises(ConfigError, match=r"^inner\.mode: must be one of a, b, got 'c'"):
        config_from_dict(Outer, {"inner": {"mode": "c"}})
    with pytest.raises(ConfigError, match=r"^pick: must be one of p, q, null, got 'r'"):
        config_from_dict(Outer, {}, ["pick=r"])
    with pytest.raises(ConfigError, match=r"^the config must be a mapping"):
        config_from_dict(Outer, [1])


def test_post_init_errors_carry_the_dotted_key():
    with pytest.raises(ConfigError, match=r"^inner\.size: must be > 0, got 0$"):
        config_from_dict(Outer, {"inner": {"size": 0}})
    with pytest.raises(ConfigError, match=r"^items\[1\]\.size: must be > 0, got -1$"):
        config_from_dict(Outer, {"items": [{}, {"size": -1}]})
    with pytest.raises(ConfigError, match=r"^mode: must be one of a, b"):  # built in code: the field's own name
        Inner(mode="c")


def test_commented_yaml_explains_every_key_and_reads_back():
    config = Outer(items=[Inner(mode="b")])
    text = commented_yaml(config, ["a header"])
    assert text.startswith("# a header\n") and "name: x  # the name" in text
    assert "  size: 1  # a size over two lines" in text
    assert "text: |" in text  # multi-line strings as blocks
    assert build_dataclass(Outer, yaml.safe_load(text)) == config


def test_describe_config_lists_types_defaults_and_help():
    text = describe_config(Outer)
    assert "  pick: p | q | null = null  # p, q or null" in text
    assert "  inner.mode: a | b = a  # a or b" in text and "  items[].size: int = 1" in text


def _keys(cls, prefix=""):
    """Every dotted key of a config class, and whether its field has help text."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        item = typing.get_args(tp)[0] if typing.get_origin(tp) is list else None
        key = prefix + f.name + ("[]" if dataclasses.is_dataclass(item) else "")
        yield key, bool(f.metadata.get("help"))
        for sub in (tp, item):
            if dataclasses.is_dataclass(sub):
                yield from _keys(sub, key + ".")


def _help(module: str, capsys) -> str:
    main = __import__(module, fromlist=["main"]).main
    with pytest.raises(SystemExit):
        main(["--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize("module, cls", [
    ("orv_engine.training.cli", MultiViewConfig), ("vla_finetune.train_cli", VLAConfig),
    ("augment.cli", AugmentConfig), ("filtering.cli", FilterConfig),
])
def test_every_key_has_help_and_each_command_lists_it(module, cls, capsys):
    keys = list(_keys(cls))
    assert [key for key, has_help in keys if not has_help] == []
    text = _help(module, capsys)
    assert [key for key, _ in keys if f"\n  {key}:" not in text] == []


def test_orv_filter_write_config_explains_every_key(tmp_path):
    from filtering.cli import main

    assert main(["--write-config", str(tmp_path / "f.yaml"), "--set", "selection.drop_percent=5"]) == 0
    text = (tmp_path / "f.yaml").read_text()
    assert "temperature: 0.0  # greedy by default" in text and "drop_percent: 5.0  # paper" in text
    assert FilterConfig.load(tmp_path / "f.yaml") == FilterConfig().override(["selection.drop_percent=5"])
