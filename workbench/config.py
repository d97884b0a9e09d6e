"""Frozen-dataclass configs: build from plain data, validate, load, save, override, hash.

Every job config in the workbench is a ``@dataclasses.dataclass(frozen=True)`` whose defaults
run on a CPU. This module turns JSON/YAML/CLI data into such objects and rejects anything it
cannot use with one line that names the key, the source and the valid choices::

    @dataclass(frozen=True)
    class TrainConfig:
        lr: float = field(default=1e-3, metadata=bounds(gt=0))
        optimizer: Literal["adam", "sgd"] = "adam"
        model: ModelConfig = ModelConfig()

    cfg = load(TrainConfig, "train.yaml")
    cfg = apply_overrides(cfg, ["model.width=256", "lr=3e-4"])
    save(cfg, run_dir / "config.json")

Supported field types: int, float, bool, str, pathlib.Path, Literal[...], Optional[X] / X | None,
tuple[X, ...], tuple[X, Y], list[X], dict[str, X], Any and nested dataclasses.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import numbers
import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from workbench.atomic import atomic_write_text
from workbench.errors import ConfigError, InputError

__all__ = ["apply_overrides", "bounds", "config_hash", "from_dict", "load", "save", "to_dict"]

T = TypeVar("T")

# Key under which `bounds` stores its limits in a dataclass field's metadata.
_BOUNDS_KEY = "workbench.bounds"
_BOUND_SYMBOLS = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
_EXTENSIONS = (".json", ".yaml", ".yml")


class _YamlLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that also reads ``1e-3`` as a float.

    PyYAML follows YAML 1.1, where a float needs a dot, so ``lr: 1e-3`` would arrive as the
    string "1e-3". YAML 1.2 (and every ML config ever written) means a number.
    """


_YamlLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"), list("-+0123456789")
)


def _yaml_load(text: str) -> Any:
    return yaml.load(text, Loader=_YamlLoader)


# --------------------------------------------------------------------------------------------
# Range metadata
# --------------------------------------------------------------------------------------------


def bounds(
    *, ge: float | None = None, gt: float | None = None, le: float | None = None, lt: float | None = None
) -> dict[str, Any]:
    """Field metadata declaring a numeric range for a config field.

    Use as ``field(default=0.1, metadata=bounds(ge=0, lt=1))``. For tuple/list fields the range
    applies to every element.
    """
    limits = {name: value for name, value in {"ge": ge, "gt": gt, "le": le, "lt": lt}.items() if value is not None}
    if not limits:
        raise TypeError("bounds() needs at least one of ge, gt, le, lt")
    if "ge" in limits and "gt" in limits or "le" in limits and "lt" in limits:
        raise TypeError("bounds() takes at most one lower (ge/gt) and one upper (le/lt) limit")
    return {_BOUNDS_KEY: limits}


def _check_bounds(key: str, value: Any, raw: Any, limits: Mapping[str, float], source: str) -> None:
    if value is None:
        return
    if isinstance(value, (tuple, list)):
        for i, item in enumerate(value):
            _check_bounds(f"{key}[{i}]", item, raw[i], limits, source)
        return
    if not isinstance(value, numbers.Real) or isinstance(value, bool):
        return
    passes = {
        "ge": lambda limit: value >= limit,
        "gt": lambda limit: value > limit,
        "le": lambda limit: value <= limit,
        "lt": lambda limit: value < limit,
    }
    # NaN fails every comparison, so it is rejected by any declared range.
    if not all(passes[name](limit) for name, limit in limits.items()):
        rule = " and ".join(f"{_BOUND_SYMBOLS[name]} {limit}" for name, limit in limits.items())
        raise ConfigError(f"{key} = {raw!r} in {source} is out of range; must be {rule}")


# --------------------------------------------------------------------------------------------
# Building configs from plain data
# --------------------------------------------------------------------------------------------


def from_dict(cls: type[T], data: Mapping[str, Any], *, source: str = "config") -> T:
    """Build the (possibly nested) frozen dataclass `cls` from plain data, validating every value.

    `source` names where the data came from (a file name, "--set lr=3") in error messages.
    Raises ConfigError for unknown keys, missing required keys, wrong types, values outside a
    Literal's choices or a field's `bounds`, and for errors raised by the class's __post_init__.
    """
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise TypeError(f"from_dict needs a dataclass type, got {cls!r}")
    return _build(cls, data, source, prefix="")


def _build(cls: type[T], data: Any, source: str, prefix: str) -> T:
    where = f"'{prefix.rstrip('.')}'" if prefix else "the top level"
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} in {source} must be a mapping of {cls.__name__} keys, got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    for key in data:
        if key not in fields:
            raise ConfigError(_unknown_key_message(f"{prefix}{key}", str(key), fields, source))

    hints = _type_hints(cls)
    kwargs: dict[str, Any] = {}
    missing = []
    for name, f in fields.items():
        key = f"{prefix}{name}"
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                missing.append(key)
            continue
        raw = data[name]
        value = _convert(raw, hints.get(name, f.type), key, source)
        if _BOUNDS_KEY in f.metadata:
            _check_bounds(key, value, raw, f.metadata[_BOUNDS_KEY], source)
        kwargs[name] = value
    if missing:
        keys = ", ".join(repr(key) for key in missing)
        raise ConfigError(f"missing required key{'s' * (len(missing) > 1)} {keys} in {source}")

    try:
        # __post_init__ runs here; it may do cross-field checks.
        return cls(**kwargs)
    except ConfigError as exc:
        if source in str(exc):
            raise
        raise ConfigError(f"{exc} (in {source})") from exc
    except InputError:  # a domain check that names its own problem (callers add the file)
        raise
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"invalid {cls.__name__} in {source}: {exc}") from exc


def _unknown_key_message(key: str, name: str, fields: Mapping[str, Any], source: str) -> str:
    message = f"unknown key '{key}' in {source}; valid keys: {', '.join(sorted(fields))}"
    close = difflib.get_close_matches(name, list(fields), n=1)
    if close:
        message += f" (did you mean '{close[0]}'?)"
    return message


def _type_hints(cls: type) -> dict[str, Any]:
    # get_type_hints resolves string annotations (`from __future__ import annotations`); it can
    # fail for classes defined inside functions, where the raw annotations are the best we have.
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):
        return {f.name: f.type for f in dataclasses.fields(cls)}


def _convert(value: Any, tp: Any, key: str, source: str) -> Any:
    """Check `value` against the annotation `tp` and return it in its canonical Python form."""
    if tp is Any or tp is object:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if isinstance(value, tp):
            return value
        return _build(tp, value, source, prefix=f"{key}.")

    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if origin is Union or origin is types.UnionType:
        if value is None and type(None) in args:
            return None
        options = [arg for arg in args if arg is not type(None)]
        if len(options) == 1 and not _is_scalar_type(options[0]):
            # Containers and nested configs give a more precise message themselves.
            return _convert(value, options[0], key, source)
        for option in options:
            try:
                return _convert(value, option, key, source)
            except ConfigError:
                continue
        raise _wrong_type(key, tp, value, source)

    if origin is Literal:
        # `True == 1`, so compare types as well as values.
        for choice in args:
            if type(value) is type(choice) and value == choice:
                return value
        choices = ", ".join(repr(choice) for choice in args)
        raise ConfigError(f"{key} = {value!r} in {source} is not a valid choice; choose one of: {choices}")

    if origin is tuple or origin is list:
        if not isinstance(value, (list, tuple)):
            raise _wrong_type(key, tp, value, source)
        if origin is list or not args or (len(args) == 2 and args[1] is Ellipsis):
            item_types = [args[0] if args else Any] * len(value)
        else:
            if len(value) != len(args):
                raise ConfigError(
                    f"{key} in {source} must have {len(args)} items ({_type_name(tp)}), got {len(value)}: {value!r}"
                )
            item_types = list(args)
        items = [
            _convert(item, item_tp, f"{key}[{i}]", source) for i, (item, item_tp) in enumerate(zip(value, item_types))
        ]
        return tuple(items) if origin is tuple else items

    if origin is dict:
        if not isinstance(value, Mapping):
            raise _wrong_type(key, tp, value, source)
        key_tp, value_tp = args if args else (Any, Any)
        return {
            _convert(k, key_tp, f"{key} key {k!r}", source): _convert(v, value_tp, f"{key}.{k}", source)
            for k, v in value.items()
        }

    return _convert_scalar(value, tp, key, source)


def _convert_scalar(value: Any, tp: Any, key: str, source: str) -> Any:
    # bool is a subclass of int: `batch_size: true` must not become 1.
    if tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return int(value)
    elif tp is float:
        if isinstance(value, numbers.Real) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif tp is Path:
        if isinstance(value, (str, os.PathLike)) and str(value):
            return Path(value)
    elif isinstance(tp, type):
        if isinstance(value, tp):
            return value
    else:
        raise TypeError(f"{key}: unsupported config field type {tp!r}")
    raise _wrong_type(key, tp, value, source)


def _is_scalar_type(tp: Any) -> bool:
    return tp in (bool, int, float, str, Path) or typing.get_origin(tp) is Literal


def _wrong_type(key: str, tp: Any, value: Any, source: str) -> ConfigError:
    return ConfigError(f"{key} in {source} must be {_type_name(tp)}, got {_show(value)}")


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Path:
        return "a path"
    if tp is type(None):
        return "None"
    if origin is Union or origin is types.UnionType:
        return " or ".join(_type_name(arg) for arg in args)
    if origin is Literal:
        return "one of " + ", ".join(repr(arg) for arg in args)
    if origin is not None:
        inner = ", ".join("..." if arg is Ellipsis else _type_name(arg) for arg in args)
        return f"{origin.__name__}[{inner}]" if args else origin.__name__
    return getattr(tp, "__name__", repr(tp))


def _show(value: Any) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{text} ({type(value).__name__})"


# --------------------------------------------------------------------------------------------
# Plain data out
# --------------------------------------------------------------------------------------------


def to_dict(obj: Any) -> dict[str, Any]:
    """The config as JSON-safe plain data: Paths become str, tuples lists, dataclasses dicts.

    Only init fields are included, so ``from_dict(type(obj), to_dict(obj)) == obj``.
    """
    if not (dataclasses.is_dataclass(obj) and not isinstance(obj, type)):
        raise TypeError(f"to_dict needs a dataclass instance, got {type(obj).__name__}")
    return _plain(obj)


def _plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        return value.item()
    return value


def config_hash(obj: Any) -> str:
    """Short stable id of a config: the first 12 hex digits of sha256 of its canonical JSON.

    Two configs with equal values (of any class) hash alike; the default run id uses this.
    """
    canonical = json.dumps(to_dict(obj), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:12]


# --------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------


def _suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix not in _EXTENSIONS:
        raise ConfigError(
            f"config file {path} has unknown extension '{path.suffix}'; valid extensions: {', '.join(_EXTENSIONS)}"
        )
    return suffix


def load(cls: type[T], path: str | os.PathLike[str]) -> T:
    """Read `cls` from a .json, .yaml or .yml file; any problem is a ConfigError naming the file."""
    path = Path(path)
    suffix = _suffix(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None

    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"invalid JSON in {path} at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    else:
        try:
            data = _yaml_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
            problem = getattr(exc, "problem", None) or str(exc)
            raise ConfigError(f"invalid YAML in {path}{at}: {problem}") from None

    if not isinstance(data, Mapping):
        got = "an empty file" if data is None else _show(data)
        raise ConfigError(f"config file {path} must hold a mapping of keys at the top level, got {got}")
    return from_dict(cls, data, source=str(path))


def save(obj: Any, path: str | os.PathLike[str]) -> None:
    """Write the config as JSON or YAML (by extension), atomically (temp file + os.replace)."""
    path = Path(path)
    data = to_dict(obj)
    if _suffix(path) == ".json":
        text = json.dumps(data, indent=2) + "\n"
    else:
        text = yaml.safe_dump(data, sort_keys=False, default_flow_style=False)
    atomic_write_text(path, text)


# --------------------------------------------------------------------------------------------
# CLI overrides
# --------------------------------------------------------------------------------------------


def apply_overrides(obj: T, overrides: Sequence[str]) -> T:
    """Return a copy of `obj` with ``key=value`` overrides applied (``--set model.width=256``).

    Values are read as YAML (``3``, ``1e-3``, ``true``, ``[1, 2]``, ``null``); text that is not
    valid YAML is taken as a plain string. The result is validated exactly like a loaded file.
    """
    if isinstance(overrides, str):
        raise TypeError("apply_overrides takes a sequence of 'key=value' strings, not one string")
    cls = type(obj)

    def applied(items: Sequence[str]) -> dict[str, Any]:
        data = to_dict(obj)
        for item in items:
            key, sep, text = item.partition("=")
            key = key.strip()
            if not sep or not key:
                raise ConfigError(f"override '{item}' must look like key=value (e.g. lr=3e-4)")
            try:
                value = _yaml_load(text) if text.strip() else None
            except yaml.YAMLError:
                value = text
            _set_dotted(cls, data, key, value, f"--set {item}")
        return data

    overrides = list(overrides)
    data = applied(overrides)
    try:
        # Validated once, after all of them: `--set corpus=file --set corpus_path=x` is valid
        # even though the first alone is not.
        return from_dict(cls, data, source="--set " + " --set ".join(overrides) if overrides else "config")
    except ConfigError:
        # Name the override to blame: the one without which the config is valid.
        for i, item in enumerate(overrides):
            try:
                from_dict(cls, applied(overrides[:i] + overrides[i + 1 :]), source="config")
            except ConfigError:
                continue
            return from_dict(cls, data, source=f"--set {item}")  # raises, naming it
        raise


def _set_dotted(cls: type, data: dict[str, Any], key: str, value: Any, source: str) -> None:
    parts = key.split(".")
    node, node_cls = data, cls
    for depth, part in enumerate(parts):
        fields = {f.name: f for f in dataclasses.fields(node_cls) if f.init}
        if part not in fields:
            raise ConfigError(_unknown_key_message(key, part, fields, source))
        if depth == len(parts) - 1:
            node[part] = value
            return
        hint = _type_hints(node_cls).get(part, fields[part].type)
        nested = _nested_config_type(hint)
        if nested is None and depth == len(parts) - 2 and typing.get_origin(hint) is dict:
            # a mapping field takes one key at a time: --set job.sbatch.dependency=afterok:123
            node[part] = {**(node.get(part) or {}), parts[-1]: value}
            return
        if nested is None:
            done = ".".join(parts[: depth + 1])
            raise ConfigError(
                f"'{done}' in {source} is not a nested config, so '{key}' cannot be set; use {done}=VALUE"
            )
        if not isinstance(node.get(part), dict):
            node[part] = {}  # an Optional nested config that is None: start from its defaults
        node, node_cls = node[part], nested


def _nested_config_type(tp: Any) -> type | None:
    """The dataclass inside `tp` (``Sub`` or ``Sub | None``), or None when `tp` is not one."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp
    if typing.get_origin(tp) in (Union, types.UnionType):
        found = [arg for arg in typing.get_args(tp) if dataclasses.is_dataclass(arg) and isinstance(arg, type)]
        if len(found) == 1:
            return found[0]
    return None
