"""A meta-path finder that makes the packages in ``$TORCHSTYLE_TEST_HIDE`` not installed."""

from __future__ import annotations

import os
import sys


class Hidden:
    """Answers every import of a hidden package (and its submodules) as not installed."""

    def __init__(self, names: set[str]) -> None:
        self.names = names

    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


def install() -> None:
    names = {n for n in os.environ.get("TORCHSTYLE_TEST_HIDE", "").split(",") if n}
    if names:
        sys.meta_path.insert(0, Hidden(names))
