"""The one model registry: ``register_model``, ``create_model(name, **kw)``, ``list_models``.

A registered factory is any callable returning an ``nn.Module`` (usually the class). An
entry may name engine callbacks its training needs (``callbacks=("concept_alignment",)``):
names only, since models import nothing from the engine; the engine builds them.
``create_model`` stores ``{"name": name, **kw}`` on the model as ``model.fmkit_config``,
so that a checkpoint can carry the config and rebuild the model with
``create_model(**config)``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from fmkit.errors import FmkitError

Factory = TypeVar("Factory", bound=Callable[..., nn.Module])

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}
_CALLBACKS: dict[str, tuple[str, ...]] = {}


def register_model(name: str, callbacks: tuple[str, ...] = ()) -> Callable[[Factory], Factory]:
    """Decorator: register ``factory`` under ``name`` (each name once), with the engine callbacks it trains with."""

    def decorate(factory: Factory) -> Factory:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        _REGISTRY[name] = factory
        _CALLBACKS[name] = tuple(callbacks)
        return factory

    return decorate


def unregister_model(name: str) -> None:
    """Remove a registered model (tests register throw-away models)."""
    _REGISTRY.pop(name, None)
    _CALLBACKS.pop(name, None)


def model_callbacks(name: str) -> tuple[str, ...]:
    """Names of the engine callbacks that model ``name`` trains with (its registry entry)."""
    return _CALLBACKS.get(name, ())


def list_models() -> list[str]:
    """The registered model names, sorted."""
    return sorted(_REGISTRY)


def create_model(name: str, **kw: Any) -> nn.Module:
    """Build the model registered as ``name`` with keyword arguments ``kw``.

    Raises FmkitError for an unknown name (listing the registered ones), for keyword
    arguments the model does not take, and for values it rejects (its ValueError).
    """
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise FmkitError(f"unknown model {name!r}; registered models: {', '.join(list_models())}") from None
    try:
        inspect.signature(factory).bind(**kw)
    except TypeError as err:
        raise FmkitError(f"model {name!r}: {err}") from None
    try:
        model = factory(**kw)
    except ValueError as err:
        raise FmkitError(f"model {name!r}: {err}") from err
    model.fmkit_config = {"name": name, **kw}
    return model
