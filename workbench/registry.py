"""Model kinds by name: what `kind:` in a job config means.

A model kind is a config dataclass plus a LightningModule built from ``(config, seed)``, declared
as a `Trainable`::

    TRAINABLE = Trainable("mlp_regression", MLPRegressionConfig, "workbench.mlp.module:MLPRegression",
                          "tiny MLP regression on a synthetic smooth function")

`get_trainable(kind)` finds it, in this order:

1. kinds registered in this process (`register_trainable`, for notebooks);
2. the built-in kinds of `workbench.areas.KINDS`;
3. ``package.module:Name``: any importable object, so a model kind can live outside the
   repository with no edit here. ``Name`` is a `Trainable`, or a LightningModule class with a
   ``Config`` attribute (its config dataclass) and an ``__init__(config, seed)``;
4. the ``workbench.trainables`` entry-point group of installed packages (name -> "module:Name").

The module that holds a declaration should import no torch, so that `workbench jobs submit` can
check a config in a fraction of a second; the LightningModule is imported when a run starts.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any

from workbench.areas import KINDS
from workbench.errors import ConfigError

__all__ = [
    "ENTRY_POINT_GROUP",
    "Trainable",
    "get_trainable",
    "known_kinds",
    "load_object",
    "register_trainable",
    "trainable_for",
]

ENTRY_POINT_GROUP = "workbench.trainables"


@dataclass(frozen=True)
class Trainable:
    """A model family the harness can train: its config type and its LightningModule."""

    name: str
    config_type: type
    # The LightningModule class, or where to import it from ("package.module:Class"). The harness
    # seeds torch before calling it with (config, seed), so initial weights depend on the seed;
    # `seed` is for whatever else the model draws, such as its batches.
    module: str | type
    description: str = ""
    # config -> None (or where to import it from); raises InputError for what a config cannot say
    # about itself (a data file that is missing or too short, a base-shape file for another model).
    # `jobs` calls it before submitting, so the user hears at once, not from a failed job's log.
    preflight: Callable[[Any], None] | str | None = None

    def __post_init__(self) -> None:
        if not (isinstance(self.config_type, type) and dataclasses.is_dataclass(self.config_type)):
            raise TypeError(f"trainable {self.name!r}: config_type must be a dataclass type")

    def module_class(self) -> type:
        return load_object(self.module) if isinstance(self.module, str) else self.module

    def build(self, config: Any, seed: int):
        """The LightningModule for `config` (imports the model's module on first use)."""
        return self.module_class()(config, seed)

    def check(self, config: Any) -> None:
        """Run the preflight checks of `config` (nothing when the kind has none)."""
        check = load_object(self.preflight) if isinstance(self.preflight, str) else self.preflight
        if check is not None:
            check(config)


_REGISTERED: dict[str, Trainable] = {}
_RESOLVED: dict[str, Trainable] = {}


def register_trainable(trainable: Trainable) -> Trainable:
    """Make `trainable` known by its name in this process (a notebook's own model, a test double)."""
    known = _REGISTERED.get(trainable.name)
    if known is not None and known.config_type is not trainable.config_type:
        raise ValueError(f"trainable {trainable.name!r} is already registered with another config type")
    _REGISTERED[trainable.name] = trainable
    return trainable


def get_trainable(kind: str) -> Trainable:
    """The Trainable that `kind` names (see the module docstring); ConfigError if none does."""
    if kind in _REGISTERED:
        return _REGISTERED[kind]
    if kind not in _RESOLVED:
        target = KINDS.get(kind) or (kind if ":" in kind else _entry_point(kind))
        if target is None:
            raise ConfigError(
                f"unknown trainable kind {kind!r}; registered kinds: {', '.join(known_kinds())} "
                "(or name your own as package.module:Name)"
            )
        _RESOLVED[kind] = _as_trainable(kind, load_object(target, what=f"kind {kind!r}"))
    return _RESOLVED[kind]


def trainable_for(config: Any) -> Trainable:
    """The Trainable whose config type is exactly ``type(config)``."""
    for trainable in (*_REGISTERED.values(), *_RESOLVED.values()):
        if type(config) is trainable.config_type:
            return trainable
    for kind in KINDS:
        if type(config) is get_trainable(kind).config_type:
            return get_trainable(kind)
    raise ConfigError(f"no trainable is registered for {type(config).__name__}")


def known_kinds() -> list[str]:
    """Every kind name this process can resolve without a ``module:Name`` path."""
    names = set(_REGISTERED) | set(KINDS) | {ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)}
    return sorted(names)


def load_object(target: str, *, what: str = "object") -> Any:
    """Import ``"package.module:attribute"``; ConfigError naming what failed."""
    module_name, sep, attribute = target.partition(":")
    if not sep or not module_name or not attribute:
        raise ConfigError(f"{what}: {target!r} must look like package.module:Name")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise ConfigError(f"{what}: cannot import {module_name} ({type(error).__name__}: {error})") from None
    obj: Any = module
    for part in attribute.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise ConfigError(f"{what}: {module_name} has no {attribute!r}") from None
    return obj


def _entry_point(kind: str) -> str | None:
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.name == kind:
            return ep.value
    return None


def _as_trainable(kind: str, obj: Any) -> Trainable:
    if isinstance(obj, Trainable):
        return obj if obj.name == kind else dataclasses.replace(obj, name=kind)
    config_type = getattr(obj, "Config", None)
    if isinstance(obj, type) and isinstance(config_type, type) and dataclasses.is_dataclass(config_type):
        doc = (obj.__doc__ or "").strip().splitlines()
        return Trainable(kind, config_type, obj, doc[0] if doc else "", getattr(obj, "preflight", None))
    raise ConfigError(
        f"kind {kind!r} names {obj!r}, which is neither a workbench Trainable nor a "
        "LightningModule class with a Config dataclass attribute"
    )
