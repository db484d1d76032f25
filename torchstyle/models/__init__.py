"""Finished models and their registry.

A new model is a new file: decorate its class with :func:`register_model` and import the file
below. Nothing dispatches on model names with if/elif.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any, TypeVar

from torchstyle.errors import UserError
from torchstyle.models.base import TorchstyleModel, build_optimizer
from torchstyle.spec import DataSpec

__all__ = [
    "TorchstyleModel",
    "UnknownModelError",
    "build_optimizer",
    "create_model",
    "get_model_class",
    "list_models",
    "register_model",
]

_REGISTRY: dict[str, type[TorchstyleModel]] = {}
# Modules holding the built-in models; imported lazily so `import torchstyle` stays cheap.
_BUILTIN_MODULES = ("classifier", "dcgan", "gpt", "mlp", "pix2pix")
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
        assert issubclass(cls, TorchstyleModel), f"{cls.__name__} must subclass TorchstyleModel"
        existing = _REGISTRY.get(name)
        assert existing is None or existing is cls, f"model name {name!r} is already registered"
        _REGISTRY[name] = cls
        cls.model_name = name
        return cls

    return decorator


def _load_builtins() -> None:
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    for module in _BUILTIN_MODULES:
        try:
            importlib.import_module(f"torchstyle.models.{module}")
        except ModuleNotFoundError as e:
            # A built-in whose issue has not landed yet is simply absent.
            if e.name != f"torchstyle.models.{module}":
                raise


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
    """
    cls = get_model_class(name)
    if spec is None:
        return cls(**kwargs)
    return cls.from_spec(spec, **kwargs)
