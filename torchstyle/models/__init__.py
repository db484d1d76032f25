"""Finished models and their registry.

A new model is a new file in this package whose class is decorated with
:func:`register_model`: the registry finds it by scanning the package, as the linter finds
its rules. Nothing dispatches on model names with if/elif, and no list of modules is kept.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable
from typing import Any, TypeVar

from torchstyle.errors import UserError
from torchstyle.models.arguments import accepted_arguments, check_arguments, check_contract
from torchstyle.models.base import TorchstyleModel, build_optimizer
from torchstyle.nn.errors import ArgumentError
from torchstyle.spec import DataSpec

__all__ = [
    "TorchstyleModel",
    "UnknownModelError",
    "accepted_arguments",
    "build_optimizer",
    "create_model",
    "get_model_class",
    "list_models",
    "register_model",
]

_REGISTRY: dict[str, type[TorchstyleModel]] = {}
# Modules of this package that hold no model (the rest are scanned for them).
_SUPPORT_MODULES = frozenset({"arguments", "base"})
_builtins_loaded = False

M = TypeVar("M", bound=type[TorchstyleModel])


class UnknownModelError(UserError, KeyError):
    """Raised for a model name that is not registered; the message lists the known names."""

    def __str__(self) -> str:  # KeyError would repr() the message.
        return str(self.args[0])


def register_model(name: str) -> Callable[[M], M]:
    """Class decorator that registers a finished model under ``name``.

    Args:
        name: The name users pass to ``--model`` and :func:`create_model`.

    Returns:
        The decorator; it returns the class unchanged.
    """

    def decorator(cls: M) -> M:
        if not (isinstance(cls, type) and issubclass(cls, TorchstyleModel)):
            raise UserError(
                f"@register_model({name!r}): {cls!r} must be a class subclassing TorchstyleModel"
            )
        existing = _REGISTRY.get(name)
        if existing is not None and existing is not cls:
            raise UserError(
                f"model name {name!r} is already registered by {existing.__module__}."
                f"{existing.__qualname__}; register {cls.__qualname__} under another name"
            )
        _REGISTRY[name] = cls
        cls.model_name = name
        return cls

    return decorator


def _load_builtins() -> None:
    # Imported on first use, not at package import, so `import torchstyle` stays cheap.
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for info in pkgutil.iter_modules(__path__):
        if info.name not in _SUPPORT_MODULES:
            importlib.import_module(f"{__name__}.{info.name}")


def list_models() -> list[str]:
    """Returns the registered model names, sorted."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_model_class(name: str) -> type[TorchstyleModel]:
    """Returns the class registered under ``name``.

    Raises:
        UnknownModelError: ``name`` is not registered; the message lists the known names.
    """
    _load_builtins()
    try:
        return _REGISTRY[name]
    except KeyError:
        known = ", ".join(sorted(_REGISTRY)) or "(none)"
        raise UnknownModelError(f"unknown model {name!r}; known models: {known}") from None


def create_model(name: str, spec: DataSpec | None = None, **kwargs: Any) -> TorchstyleModel:
    """Builds a registered model.

    Args:
        name: A name from :func:`list_models`.
        spec: The dataset's shape and labels; when given, the model derives its input
            channels, size and classes from it (see ``TorchstyleModel.from_spec``).
        **kwargs: Constructor arguments of the model; they override what ``spec`` implies.

    Returns:
        The model, on the CPU, in training mode.

    Raises:
        UnknownModelError: ``name`` is not registered.
        UserError: An argument the constructor does not take, or of the wrong type (the
            message lists the arguments it accepts and their types); or data whose sample
            shape the model cannot take.
    """
    cls = get_model_class(name)
    check_contract(name, cls, TorchstyleModel.from_spec.__func__)  # type: ignore[attr-defined]
    check_arguments(name, cls, kwargs)
    problem = None if spec is None else cls.shape_problem(spec)
    if problem:
        raise UserError(f"model {name!r} {problem}")
    try:
        return cls(**kwargs) if spec is None else cls.from_spec(spec, **kwargs)
    except ArgumentError as e:  # a building block refused a value the model passed on
        raise UserError(f"model {name!r}: {e}; check its --model-arg values") from None
