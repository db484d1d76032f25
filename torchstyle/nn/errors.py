"""The one error the building blocks raise for a bad argument (works under ``python -O``).

A ``ValueError``, as Python's own bad values are; its own class so that
``torchstyle.models.create_model`` turns exactly these, and no bug that happens to raise a
``ValueError``, into a one-line message for the user.
"""


class ArgumentError(ValueError):
    """An argument (or an input's shape) a building block cannot work with; the message
    names it and what it must be."""
