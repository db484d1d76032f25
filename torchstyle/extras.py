"""The optional parts of torchstyle: which extra installs which packages, and one check.

A command that needs an optional package calls :func:`require` before it writes anything, so
a missing package is one line naming ``pip install 'torchstyle[EXTRA]'``, never a traceback
from deep inside a run. ``tests/test_extras.py`` checks this table against ``pyproject.toml``
and hides each package in turn.
"""

from __future__ import annotations

import importlib.util

from torchstyle.errors import UserError

#: extra -> the modules it installs (import names), as ``pyproject.toml`` lists them.
EXTRAS: dict[str, tuple[str, ...]] = {
    "timm": ("timm",),
    "experiments": ("optuna", "matplotlib"),
    "mlflow": ("mlflow", "sqlalchemy", "alembic"),
    "sweep-postgres": ("optuna", "matplotlib", "sqlalchemy", "psycopg"),
    "lsp": ("pygls",),
}


def missing(extra: str, modules: tuple[str, ...] | None = None) -> str | None:
    """The first module of ``extra`` (or of ``modules``) that cannot be imported, or None."""
    for module in modules or EXTRAS[extra]:
        try:
            found = importlib.util.find_spec(module)
        except (ImportError, ValueError):
            found = None
        if found is None:
            return module
    return None


def require(extra: str, what: str, modules: tuple[str, ...] | None = None) -> None:
    """Refuses ``what`` (``--tracker mlflow``) when a package of ``extra`` is missing.

    Args:
        extra: A key of :data:`EXTRAS`.
        what: What needs it, as the user asked for it.
        modules: Only these modules of the extra (``runs --plot`` needs matplotlib alone).

    Raises:
        UserError: A package is missing; the message names the extra that installs it.
    """
    module = missing(extra, modules)
    if module is not None:
        raise UserError(f"{what} needs {module}, which is not installed: "
                        f"pip install 'torchstyle[{extra}]'")  # fmt: skip
