"""A model's constructor arguments: checked against its signature, recorded as it was called.

Both come from the constructor itself, so nothing is kept by hand: a new argument is checked
and saved with checkpoints the moment it is added to ``__init__``.
"""

from __future__ import annotations

import functools
import inspect
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any, Union, get_args, get_origin, get_type_hints

from torchstyle.errors import UserError


def accepted_arguments(cls: type[Any]) -> dict[str, Any]:
    """The keyword arguments ``cls(...)`` accepts, with their annotated types."""
    hints = get_type_hints(cls.__init__)
    params = inspect.signature(cls.__init__).parameters
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return {
        name: hints.get(name, Any)
        for name, p in params.items()
        if name != "self" and p.kind in kinds
    }


#: What the base ``TorchstyleModel.from_spec`` passes the constructor, from the data.
SPEC_ARGUMENTS = ("in_channels", "image_size", "num_classes")


def check_contract(model_name: str, cls: type[Any], base_from_spec: Any) -> None:
    """Refuses a model class whose constructor ``--model-arg`` and ``from_spec`` cannot use.

    Args:
        model_name: The registered name (for the message).
        cls: The model class.
        base_from_spec: ``TorchstyleModel.from_spec``'s function, which passes
            :data:`SPEC_ARGUMENTS`; a class that keeps it must take them.

    Raises:
        UserError: One line naming the model and the fix: a constructor argument without a
            type hint, or the inherited ``from_spec`` passing an argument it does not take.
    """
    params = inspect.signature(cls.__init__).parameters
    hints = get_type_hints(cls.__init__)
    kinds = (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    bare = [n for n, p in params.items() if n != "self" and p.kind in kinds and n not in hints]
    if bare:
        raise UserError(
            f"model {model_name!r} ({cls.__module__}.{cls.__qualname__}): constructor "
            f"argument(s) {', '.join(bare)} have no type hint; annotate them (e.g. "
            f"`{bare[0]}: int = 8`): --model-arg values are checked against the hints"
        )
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    inherited = getattr(cls.from_spec, "__func__", None) is base_from_spec
    missing = [n for n in SPEC_ARGUMENTS if n not in params]
    if inherited and missing and not takes_any:
        raise UserError(
            f"model {model_name!r} ({cls.__module__}.{cls.__qualname__}): the inherited "
            f"from_spec passes {', '.join(missing)}, which its constructor does not take "
            f"(unexpected keyword argument {missing[0]!r}); override from_spec to pass the "
            "arguments it takes, or add them to __init__"
        )


def type_name(hint: Any) -> str:
    """``int``, ``float | None``, ``tuple[int, ...] | list[int]``: a hint as written."""
    if isinstance(hint, type) and get_origin(hint) is None:
        return hint.__name__
    return str(hint).replace("typing.", "").replace("NoneType", "None")


def matches(value: Any, hint: Any) -> bool:
    """Whether ``value`` fits the annotation ``hint`` (as far as a JSON value can)."""
    origin = get_origin(hint)
    if hint is Any:
        return True
    if origin in (Union, types.UnionType):
        return any(matches(value, h) for h in get_args(hint))
    if hint is None or hint is type(None):
        return value is None
    if origin in (list, tuple):
        items = get_args(hint)
        item_hint = items[0] if items else Any
        return isinstance(value, (list, tuple)) and all(matches(v, item_hint) for v in value)
    if hint is bool:
        return isinstance(value, bool)
    if hint is float:  # an int is a fine float
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True  # a hint this check does not know: the constructor judges


def check_arguments(model_name: str, cls: type[Any], kwargs: dict[str, Any]) -> None:
    """Refuses constructor arguments the model does not take, or of the wrong type.

    Raises:
        UserError: Naming the argument, what it got, and every argument the model accepts
            with its type.
    """
    accepted = accepted_arguments(cls)
    listing = ", ".join(f"{n} ({type_name(h)})" for n, h in accepted.items())
    for name, value in kwargs.items():
        if name not in accepted:
            raise UserError(
                f"model {model_name!r} got an unexpected keyword argument {name!r} "
                f"(--model-arg {name}=...); it accepts: {listing}"
            )
        if not matches(value, accepted[name]):
            raise UserError(
                f"model {model_name!r}: --model-arg {name}={value!r} must be "
                f"{type_name(accepted[name])}; it accepts: {listing}"
            )


def _plain(value: Any) -> Any:
    """A value a checkpoint (``weights_only``) and JSON both hold: paths as text, tuples as lists."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def recording_arguments(init: Callable[..., None]) -> Callable[..., None]:
    """Wraps a model's ``__init__`` so the instance keeps the arguments it was built with.

    Only the outermost constructor records (a subclass's ``super().__init__()`` does not
    overwrite what its caller passed); defaults are filled in, so a rebuild gives the same
    model even after a default changes.
    """
    signature = inspect.signature(init)

    @functools.wraps(init)
    def recording_init(self: Any, *args: Any, **kwargs: Any) -> None:
        if "_hparams" not in self.__dict__:
            bound = signature.bind(self, *args, **kwargs)
            bound.apply_defaults()
            recorded: dict[str, Any] = {}
            for name, value in list(bound.arguments.items())[1:]:  # after self
                kind = signature.parameters[name].kind
                if kind is inspect.Parameter.VAR_KEYWORD:
                    recorded.update({k: _plain(v) for k, v in value.items()})
                elif kind is not inspect.Parameter.VAR_POSITIONAL:
                    recorded[name] = _plain(value)
            # Set past nn.Module.__setattr__: the module is not initialized yet.
            object.__setattr__(self, "_hparams", recorded)
        init(self, *args, **kwargs)

    return recording_init
