"""The named data sources ``--data`` takes, registered with :func:`register_source`.

Each source says in one line what it is and which layout its samples have, so the CLI's
help and a model's layout check are generated from one place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torchstyle.data.base import DataBundle, DataOptions

# Layout name -> how a folder of that layout is organised (for help and error messages).
LAYOUTS: dict[str, str] = {
    "classes": (
        "class-labelled images: a folder with train/<class>/*.png and test/<class>/*.png "
        "(and optionally val/<class>/)"
    ),
    "paired": (
        "A|B image pairs: a folder with train/*.png and test/*.png, each image the input A "
        "(left half) and the target B (right half) side by side, twice as wide as high"
    ),
    "tokens": "a byte corpus for a language model (windows of bytes, next-byte targets)",
}


@dataclass(frozen=True)
class DataSource:
    """A named data source.

    Attributes:
        name: What ``--data`` takes.
        build: Builds the splits from :class:`~torchstyle.data.DataOptions`.
        description: One line for ``--help``.
        layout: The layout of its samples, a key of :data:`LAYOUTS`.
    """

    name: str
    build: Callable[[DataOptions], DataBundle]
    description: str
    layout: str


DATA_SOURCES: dict[str, DataSource] = {}


def register_source(
    name: str, *, description: str, layout: str = "classes"
) -> Callable[[Callable[[DataOptions], DataBundle]], Callable[[DataOptions], DataBundle]]:
    """Registers a function ``(DataOptions) -> DataBundle`` as ``--data NAME``.

    Args:
        name: The name ``--data`` takes (not a path: no ``/`` or ``:``).
        description: One line saying what the data is, for ``--help``.
        layout: ``classes`` (labelled images) or ``paired`` (A|B pairs).

    Returns:
        The decorator; it returns the function unchanged.

    Raises:
        ValueError: The name is taken, malformed, or the layout unknown.
    """
    if not name or "/" in name or ":" in name:
        raise ValueError(f"data source name {name!r} must not be empty or hold '/' or ':'")
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; one of {', '.join(LAYOUTS)}")

    def decorator(
        build: Callable[[DataOptions], DataBundle],
    ) -> Callable[[DataOptions], DataBundle]:
        if name in DATA_SOURCES and DATA_SOURCES[name].build is not build:
            raise ValueError(f"data source {name!r} is already registered")
        DATA_SOURCES[name] = DataSource(name, build, description, layout)
        return build

    return decorator


def get_source(name: str) -> DataSource | None:
    """The registered source ``name``, or None."""
    return DATA_SOURCES.get(name)


def list_sources() -> list[tuple[str, str]]:
    """Every registered source as ``(name, one-line description)``, in registration order."""
    return [(s.name, f"{s.description} [{s.layout}]") for s in DATA_SOURCES.values()]


def sources_help() -> str:
    """The help text of ``--data``: each named source with its line, then the other forms."""
    named = "; ".join(f"{name}: {line}" for name, line in list_sources())
    return (
        f"{named}; or a folder path (train/, test/, optional val/), or path/to/file.py:function "
        "or module:function returning the splits as datasets"
    )


def default_source(layout: str) -> str:
    """The first registered source of ``layout`` (the default data of a model needing it).

    Raises:
        KeyError: No source has that layout.
    """
    for source in DATA_SOURCES.values():
        if source.layout == layout:
            return source.name
    raise KeyError(layout)


def layout_error(model_layout: str, given: str, data: str) -> str:
    """The message for a model given data of the wrong layout: what it needs and how to get it."""
    examples = [s.name for s in DATA_SOURCES.values() if s.layout == model_layout]
    named = f"pass --data {examples[0]}, or " if examples else "pass "
    return (
        f"this model needs {model_layout!r} data but --data {data} is {given!r} data; "
        f"{named}{LAYOUTS[model_layout]}"
    )
