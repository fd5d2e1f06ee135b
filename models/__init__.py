"""The model library: one module per published model family, each function returning a model
specification (``pbpk.Model``) with its citation, equations and parameter table.

    >>> import pbpk
    >>> pbpk.models.available()           # names
    >>> spec = pbpk.models.load("docetaxel_bruno1996")
    >>> model = spec.compile()

In a source checkout this folder is ``models/``; installed, it is the ``pbpk.models`` package.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass

from pbpk.errors import ModelError, did_you_mean

__all__ = ["register", "load", "available", "info", "ModelEntry"]


@dataclass(frozen=True)
class ModelEntry:
    name: str
    build: Callable
    citation: str
    description: str
    flows: bool   # built from flows, so mass balance must hold

    def __call__(self, **options):
        return self.build(**options)


_REGISTRY: dict[str, ModelEntry] = {}


def register(name: str, *, citation: str, description: str = "", flows: bool = True):
    """Decorator registering a model-building function under ``name``."""

    def wrap(fn):
        if name in _REGISTRY:
            raise ModelError(f"model library: duplicate model name {name!r}.")
        _REGISTRY[name] = ModelEntry(name, fn, citation, description or (fn.__doc__ or "").strip().split("\n")[0],
                                     flows)
        return fn

    return wrap


def _discover() -> None:
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")


def available() -> list[str]:
    """Names of all models in the library."""
    _discover()
    return sorted(_REGISTRY)


def info(name: str) -> ModelEntry:
    _discover()
    if name not in _REGISTRY:
        raise ModelError(f"no model {name!r} in the library." + did_you_mean(name, _REGISTRY)
                         + f" Available: {sorted(_REGISTRY)}.")
    return _REGISTRY[name]


def load(name: str, **options):
    """Build the named model's specification (``options`` go to its builder)."""
    entry = info(name)
    spec = entry.build(**options)
    spec.citation = spec.citation or entry.citation
    return spec
