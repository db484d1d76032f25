"""The named data sources ``--data`` takes, registered with :func:`register_source`.

Each source says in one line what it is and which layout its samples have, so the CLI's
help and a model's layout check are generated from one place.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torchstyle.data.base import DataBundle, DataOptions

#: Every split a source can build (``DataOptions.splits`` asks for some of them).
SPLIT_NAMES: tuple[str, ...] = ("train", "val", "test")

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
    "features": (
        "labelled feature vectors (tabular data): return datasets of (vector, label) samples "
        "from --data file.py:function, the vector a 1-D float tensor"
    ),
}


# What one sample of each layout is, and what the data spec records of it.
LAYOUT_SAMPLES: dict[str, str] = {
    "classes": "`(image, label)`: a `(C, H, W)` float image, any height and width; spec: "
    "`channels`, `height`, `width`, `num_classes`, `class_names`",
    "paired": "`(a, b)`: two `(C, H, W)` images, input and target; spec: `channels`, "
    "`height`, `width`",
    "tokens": "`(x, y)`: a window of token ids and the next ones; spec: `image_size` (the "
    "window), `num_classes` (the vocabulary)",
    "features": "`(vector, label)`: a 1-D float tensor of `features` numbers; spec: "
    "`features`, `num_classes`, `class_names` (`channels`, `height`, `width` are 0)",
}


def layout_fits(model_layout: str, data_layout: str) -> bool:
    """Whether a model of ``model_layout`` can be given data of ``data_layout``.

    Feature vectors are labelled samples like class-labelled images: a ``classes`` model
    takes them when it takes their shape, which the model checks when it is built.
    """
    return model_layout == data_layout or (model_layout, data_layout) == ("classes", "features")


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
        layout: A key of :data:`LAYOUTS`: ``classes`` (labelled images), ``paired`` (A|B
            pairs), ``tokens`` (a corpus) or ``features`` (labelled vectors).

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


def sources_table() -> str:
    """The named sources as a Markdown table (``docs/data.md`` shows it; a test checks it)."""
    rows = ["| source | what | layout |", "|---|---|---|"]
    rows += [f"| `{s.name}` | {s.description} | {s.layout} |" for s in DATA_SOURCES.values()]
    return "\n".join(rows)


def layouts_table() -> str:
    """The layouts as a Markdown table (``docs/data.md`` shows it; a test checks it)."""
    rows = ["| layout | a sample | what `--data` gives |", "|---|---|---|"]
    rows += [f"| `{name}` | {LAYOUT_SAMPLES[name]} | {text} |" for name, text in LAYOUTS.items()]
    return "\n".join(rows)


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


_FUNCTION_REFERENCE = re.compile(r"^(?P<file>.+\.py):(?P<function>[A-Za-z_]\w*)$")


def absolute_data(name: str) -> str:
    """What ``--data`` says, with a path made absolute (what a run records).

    Named sources and ``module:function`` stay as they are; a folder becomes its absolute
    path and ``file.py:function`` the file's absolute path, so the run can be opened, tested
    and resumed from any directory and compared with a later ``--data`` after resolving.
    """
    if name in DATA_SOURCES or name == "python":
        return name
    match = _FUNCTION_REFERENCE.match(name)
    if match is not None:
        return f"{Path(os.path.expanduser(match['file'])).resolve()}:{match['function']}"
    if re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", name):  # module:function
        return name
    return str(Path(os.path.expanduser(name)).resolve())


def same_data(a: str | None, b: str | None) -> bool:
    """Whether two ``--data`` values name the same data once paths are resolved."""
    if a is None or b is None:
        return a == b
    return a == b or absolute_data(a) == absolute_data(b)


def data_path(name: str) -> Path | None:
    """The folder or file a ``--data`` value names (None for a named source or a module)."""
    if name in DATA_SOURCES or name == "python":
        return None
    match = _FUNCTION_REFERENCE.match(name)
    if match is not None:
        return Path(os.path.expanduser(match["file"]))
    if re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", name):
        return None
    return Path(os.path.expanduser(name))


def data_moved(old: str | None, new: str | None) -> bool:
    """Whether ``old`` is a recorded path that no longer exists and ``new`` one that does
    (the data moved; the run's spec check then decides whether it is the same data)."""
    old_path = data_path(old) if old else None
    new_path = data_path(new) if new else None
    if old_path is None or new_path is None:
        return False
    return old_path.is_absolute() and not old_path.exists() and new_path.exists()
