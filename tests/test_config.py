"""Tests for workbench.config: validation messages, file round trips, overrides, hashing."""

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import pytest
import yaml

from workbench.config import apply_overrides, bounds, config_hash, from_dict, load, save, to_dict
from workbench.errors import ConfigError, InputError


@dataclass(frozen=True)
class ModelConfig:
    width: int = field(default=64, metadata=bounds(gt=0))
    depth: int = 2
    activation: Literal["gelu", "relu"] = "gelu"


@dataclass(frozen=True)
class TrainConfig:
    lr: float = field(default=1e-3, metadata=bounds(gt=0))
    batch_size: int = 8
    dropout: float = field(default=0.0, metadata=bounds(ge=0, lt=1))
    compile: bool = False
    name: str = "tiny"
    data_dir: Path = Path("data")
    optimizer: Literal["adam", "sgd"] = "adam"
    max_steps: int | None = None
    warmup: int | None = 10
    widths: tuple[int, ...] = field(default=(64, 128), metadata=bounds(gt=0))
    betas: tuple[float, float] = (0.9, 0.95)
    tags: list[str] = field(default_factory=list)
    loss_weights: dict[str, float] = field(default_factory=lambda: {"mse": 1.0})
    model: ModelConfig = ModelConfig()
    teacher: ModelConfig | None = None


@dataclass(frozen=True)
class Required:
    steps: int
    seed: int = 0


@dataclass(frozen=True)
class CrossChecked:
    low: float = 0.0
    high: float = 1.0

    def __post_init__(self):
        if self.low >= self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")


def full_config() -> TrainConfig:
    """A config with every field away from its default, so round trips test them all."""
    return TrainConfig(
        lr=3e-4,
        batch_size=32,
        dropout=0.1,
        compile=True,
        name="run a",
        data_dir=Path("/d/x"),
        optimizer="sgd",
        max_steps=1000,
        warmup=None,
        widths=(32, 64, 256),
        betas=(0.8, 0.99),
        tags=["a", "b"],
        loss_weights={"mse": 0.5, "kl": 2.0},
        model=ModelConfig(width=256, depth=4, activation="relu"),
        teacher=ModelConfig(width=512),
    )


# ------------------------------------------------------------------------------- from_dict


def test_from_dict_defaults_and_types():
    cfg = from_dict(TrainConfig, {})
    assert cfg == TrainConfig()
    cfg = from_dict(
        TrainConfig, {"lr": 1, "widths": [1, 2], "data_dir": "x/y", "model": {"width": 3}, "teacher": {"depth": 7}}
    )
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.widths == (1, 2)
    assert cfg.data_dir == Path("x/y")
    assert cfg.model == ModelConfig(width=3)
    assert cfg.teacher == ModelConfig(depth=7)


def test_unknown_key_names_key_source_and_valid_keys():
    with pytest.raises(ConfigError) as info:
        from_dict(TrainConfig, {"lrr": 0.1}, source="train.yaml")
    message = str(info.value)
    assert "unknown key 'lrr' in train.yaml" in message
    assert "valid keys: batch_size, betas, compile" in message
    assert "did you mean 'lr'" in message


def test_unknown_nested_key_uses_dotted_path_and_nested_keys():
    with pytest.raises(ConfigError) as info:
        from_dict(TrainConfig, {"model": {"widht": 3}}, source="train.yaml")
    message = str(info.value)
    assert "'model.widht'" in message
    assert "valid keys: activation, depth, width" in message


def test_config_error_is_input_error():
    # The CLI maps InputError to exit status 2.
    with pytest.raises(InputError):
        from_dict(TrainConfig, {"nope": 1})


@pytest.mark.parametrize(
    "key, value, expected",
    [
        ("batch_size", True, "int"),  # bool is an int subclass, but never a batch size
        ("batch_size", 8.0, "int"),
        ("batch_size", "8", "int"),
        ("lr", False, "float"),
        ("lr", "fast", "float"),
        ("compile", 1, "bool"),
        ("name", 3, "str"),
        ("data_dir", 3, "path"),
        ("widths", 64, "tuple[int, ...]"),
        ("tags", "a", "list[str]"),
        ("loss_weights", [1.0], "dict[str, float]"),
        ("max_steps", "many", "int or None"),
    ],
)
def test_wrong_type_names_key_expected_type_and_value(key, value, expected):
    with pytest.raises(ConfigError) as info:
        from_dict(TrainConfig, {key: value}, source="train.yaml")
    message = str(info.value)
    assert message.startswith(f"{key} in train.yaml must be")
    assert expected in message
    assert repr(value) in message


def test_wrong_type_inside_containers_names_the_item():
    with pytest.raises(ConfigError, match=r"widths\[1\] in cfg must be int, got 'x'"):
        from_dict(TrainConfig, {"widths": [1, "x"]}, source="cfg")
    with pytest.raises(ConfigError, match=r"betas in cfg must have 2 items"):
        from_dict(TrainConfig, {"betas": [0.9]}, source="cfg")
    with pytest.raises(ConfigError, match=r"loss_weights\.kl in cfg must be float"):
        from_dict(TrainConfig, {"loss_weights": {"kl": "big"}}, source="cfg")
    with pytest.raises(ConfigError, match=r"model\.depth in cfg must be int, got True"):
        from_dict(TrainConfig, {"model": {"depth": True}}, source="cfg")
    with pytest.raises(ConfigError, match=r"'model' in cfg must be a mapping"):
        from_dict(TrainConfig, {"model": 3}, source="cfg")


def test_literal_lists_choices():
    with pytest.raises(ConfigError) as info:
        from_dict(TrainConfig, {"optimizer": "sgdd"}, source="train.yaml")
    message = str(info.value)
    assert "optimizer = 'sgdd' in train.yaml" in message
    assert "'adam', 'sgd'" in message
    with pytest.raises(ConfigError, match=r"model\.activation = 'tanh'.*'gelu', 'relu'"):
        from_dict(TrainConfig, {"model": {"activation": "tanh"}})


def test_bounds():
    with pytest.raises(ConfigError) as info:
        from_dict(TrainConfig, {"lr": -1}, source="train.yaml")
    assert str(info.value) == "lr = -1 in train.yaml is out of range; must be > 0"
    with pytest.raises(ConfigError, match=r"dropout = 1.0 .* must be >= 0 and < 1"):
        from_dict(TrainConfig, {"dropout": 1.0})
    with pytest.raises(ConfigError, match=r"model\.width = 0 .*out of range; must be > 0"):
        from_dict(TrainConfig, {"model": {"width": 0}})
    with pytest.raises(ConfigError, match=r"widths\[2\] = -5 .*out of range"):
        from_dict(TrainConfig, {"widths": [1, 2, -5]})
    with pytest.raises(ConfigError, match="out of range"):
        from_dict(TrainConfig, {"lr": float("nan")})
    # The edges of the range are accepted.
    assert from_dict(TrainConfig, {"dropout": 0}).dropout == 0.0


def test_bounds_helper_rejects_nonsense():
    with pytest.raises(TypeError):
        bounds()
    with pytest.raises(TypeError):
        bounds(ge=0, gt=0)


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"missing required key 'steps' in job.json"):
        from_dict(Required, {"seed": 1}, source="job.json")
    assert from_dict(Required, {"steps": 5}) == Required(steps=5)


def test_post_init_errors_become_config_errors_naming_source():
    with pytest.raises(ConfigError, match=r"invalid CrossChecked in range.yaml: low \(2.0\)"):
        from_dict(CrossChecked, {"low": 2, "high": 1}, source="range.yaml")


def test_optional_accepts_none():
    cfg = from_dict(TrainConfig, {"max_steps": None, "warmup": None, "teacher": None})
    assert cfg.max_steps is None and cfg.warmup is None and cfg.teacher is None


# --------------------------------------------------------------------------- to_dict / files


def test_to_dict_is_json_safe():
    data = to_dict(full_config())
    assert data["data_dir"] == "/d/x"
    assert data["widths"] == [32, 64, 256]
    assert data["model"] == {"width": 256, "depth": 4, "activation": "relu"}
    json.dumps(data)  # raises if anything is not JSON-safe


@pytest.mark.parametrize("name", ["cfg.json", "cfg.yaml", "cfg.yml"])
def test_save_load_round_trip(tmp_path, name):
    cfg = full_config()
    save(cfg, tmp_path / name)
    assert load(TrainConfig, tmp_path / name) == cfg
    assert from_dict(TrainConfig, to_dict(cfg)) == cfg


def test_yaml_reads_exponent_floats(tmp_path):
    # Plain PyYAML reads "1e-3" as a string (YAML 1.1); configs mean a number.
    path = tmp_path / "train.yaml"
    path.write_text("lr: 1e-3\nmodel:\n  width: 32\n")
    cfg = load(TrainConfig, path)
    assert cfg.lr == 1e-3
    assert cfg.model.width == 32


def test_load_unknown_key_names_file(tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("lrr: 0.1\n")
    with pytest.raises(ConfigError, match=rf"unknown key 'lrr' in {path}; valid keys: "):
        load(TrainConfig, path)


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("missing.json", None, r"not found: .*missing.json"),
        ("bad.json", '{\n  "lr": 0.1,\n  "batch_size": \n}\n', r"invalid JSON in .*bad.json at line 4"),
        ("bad.yaml", "lr: 0.1\nmodel: [1, 2\nname: x\n", r"invalid YAML in .*bad.yaml at line \d+"),
        ("list.yaml", "- 1\n- 2\n", r"list.yaml must hold a mapping"),
        ("empty.yaml", "", r"empty.yaml .*empty file"),
    ],
)
def test_load_errors_name_the_file(tmp_path, name, text, message):
    path = tmp_path / name
    if text is not None:
        path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(TrainConfig, path)


def test_unknown_extension_lists_valid_ones(tmp_path):
    path = tmp_path / "train.toml"
    path.write_text("lr = 1\n")
    with pytest.raises(ConfigError, match=r"train.toml .*valid extensions: .json, .yaml, .yml"):
        load(TrainConfig, path)
    with pytest.raises(ConfigError, match="valid extensions"):
        save(TrainConfig(), tmp_path / "out.txt")


def test_save_is_atomic_on_failure(tmp_path, monkeypatch):
    path = tmp_path / "cfg.json"
    save(TrainConfig(), path)
    before = path.read_text()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    # Fail at the last step, after the temp file is fully written.
    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        save(full_config(), path)
    assert path.read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cfg.json"]


def test_saved_yaml_is_plain_yaml(tmp_path):
    save(full_config(), tmp_path / "cfg.yaml")
    data = yaml.safe_load((tmp_path / "cfg.yaml").read_text())
    assert data == to_dict(full_config())


# ------------------------------------------------------------------------------ overrides


def test_apply_overrides_parses_values():
    cfg = apply_overrides(
        TrainConfig(),
        [
            "lr=3e-4",
            "batch_size=16",
            "compile=true",
            "model.width=256",
            "widths=[1, 2]",
            "name=hello world",
            "max_steps=null",
            "teacher.depth=9",
            "data_dir=/tmp/x",
        ],
    )
    assert cfg.lr == 3e-4
    assert cfg.batch_size == 16
    assert cfg.compile is True
    assert cfg.model == ModelConfig(width=256)
    assert cfg.widths == (1, 2)
    assert cfg.name == "hello world"
    assert cfg.max_steps is None
    assert cfg.teacher == ModelConfig(depth=9)  # an unset optional sub-config starts at defaults
    assert cfg.data_dir == Path("/tmp/x")


def test_apply_overrides_leaves_original_and_later_wins():
    base = TrainConfig()
    cfg = apply_overrides(base, ["lr=0.1", "lr=0.2"])
    assert cfg.lr == 0.2
    assert base.lr == 1e-3
    assert apply_overrides(base, []) == base


def test_apply_overrides_errors():
    with pytest.raises(
        ConfigError,
        match=r"unknown key 'model.widht' .*valid keys: "
        r"activation, depth, width",
    ):
        apply_overrides(TrainConfig(), ["model.widht=3"])
    with pytest.raises(ConfigError, match=r"unknown key 'lrr' .*valid keys: batch_size"):
        apply_overrides(TrainConfig(), ["lrr=3"])
    with pytest.raises(ConfigError, match="must look like key=value"):
        apply_overrides(TrainConfig(), ["lr"])
    with pytest.raises(ConfigError, match="must look like key=value"):
        apply_overrides(TrainConfig(), ["=3"])
    with pytest.raises(ConfigError, match=r"batch_size in --set batch_size=true must be int"):
        apply_overrides(TrainConfig(), ["batch_size=true"])
    with pytest.raises(ConfigError, match=r"'lr' .* is not a nested config"):
        apply_overrides(TrainConfig(), ["lr.x=3"])
    with pytest.raises(ConfigError, match=r"lr = -1 in --set lr=-1 is out of range"):
        apply_overrides(TrainConfig(), ["lr=-1"])


# --------------------------------------------------------------------------------- hashing


def test_config_hash_is_short_stable_and_sensitive():
    h = config_hash(TrainConfig())
    assert len(h) == 12 and all(c in "0123456789abcdef" for c in h)
    assert config_hash(TrainConfig()) == h
    assert config_hash(dataclasses.replace(TrainConfig(), lr=2e-3)) != h
    assert config_hash(apply_overrides(TrainConfig(), ["model.depth=3"])) != h
    # Equal after a file round trip, so a resumed job recomputes the same run id.
    assert config_hash(from_dict(TrainConfig, json.loads(json.dumps(to_dict(full_config()))))) == config_hash(
        full_config()
    )


@dataclass(frozen=True)
class StringAnnotated:
    # What `from __future__ import annotations` produces: annotations stored as strings.
    model: "ModelConfig" = ModelConfig()
    steps: "int | None" = None


def test_string_annotations_are_resolved():
    cfg = from_dict(StringAnnotated, {"model": {"width": 8}, "steps": 3})
    assert cfg == StringAnnotated(model=ModelConfig(width=8), steps=3)
    with pytest.raises(ConfigError, match=r"steps in cfg must be int or None"):
        from_dict(StringAnnotated, {"steps": "x"}, source="cfg")


def test_overrides_are_validated_together_and_the_culprit_is_named():
    from workbench.lm.config import GPTLMConfig

    # Valid only as a pair: the first override alone fails the cross-field check.
    config = apply_overrides(GPTLMConfig(), ["corpus=file", "corpus_path=data.txt"])
    assert config.corpus == "file" and config.corpus_path == "data.txt"
    with pytest.raises(ConfigError, match=r"not divisible.*\(in --set width=36\)"):
        apply_overrides(GPTLMConfig(), ["lr=0.5", "width=36"])


def test_input_errors_are_value_errors_for_library_callers():
    """Library code raises InputError; a notebook that catches ValueError catches it too (the CLI
    still turns it into one line and exit 2, checked by every bad-input test)."""
    from operators.ks import KSGrid
    from workbench.errors import InputError

    assert issubclass(InputError, ValueError) and issubclass(ConfigError, ValueError)
    with pytest.raises(ValueError, match="grid"):
        KSGrid(L=-1.0, N=64)
