"""The one error the building blocks raise for a bad argument (works under ``python -O``).

A ``ValueError``, as Python's own bad values are; its own class so that
``torchstyle.models.create_model`` turns exactly these, and no bug that happens to raise a
``ValueError``, into a one-line message for the user.
"""


class ArgumentError(ValueError):
    """An argument (or an input's shape) a building block cannot work with; the message
    names it and what it must be."""


def require(condition: bool, message: str) -> None:
    """Raises :class:`ArgumentError` with ``message`` unless ``condition`` holds.

    For constructors: the message is formatted even when the check passes, which costs
    nothing there but would on every forward.
    """
    if not condition:
        raise ArgumentError(message)
