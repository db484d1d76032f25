"""The deprecation table against the installed torch and torchvision, and `target-torch`."""

from __future__ import annotations

import inspect
import warnings

import pytest

from tests.lint.test_fix_binding import _resolve, _signature
from torchstyle.lint import deprecations as dep
from torchstyle.lint.runner import Linter

pytest.importorskip("torch")
pytest.importorskip("torchvision")


@pytest.mark.parametrize("entry", dep.TABLE, ids=[d.name for d in dep.TABLE])
def test_entry_is_a_notice_of_the_installed_library(entry: dep.Deprecation) -> None:
    """Each entry names a real API whose own source or docstring carries the notice."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        obj = _resolve(entry.name)
        assert obj is not None, f"{entry.name} is not in the installed library"
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError):
            source = ""
        text = (source + (obj.__doc__ or "")).lower()
        assert "deprecat" in text or "removed" in text, f"no notice found for {entry.name}"
        if entry.removed:
            assert "is now removed" in text
        if entry.fix != "none":
            assert _resolve(entry.target) is not None, f"{entry.target} does not exist"
        dep.version(entry.since)
        assert entry.replacement


def test_positional_parameters_match_the_old_signature() -> None:
    """A fix names positional arguments after the old API's own parameters."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for entry in dep.TABLE:
            if not entry.params:
                continue
            names = list(_signature(_resolve(entry.name)).parameters)
            assert list(entry.params) == names[: len(entry.params)], entry.name


SOURCE = """\
import torch
from torchvision.io import read_image

with torch.cuda.amp.autocast():
    pass
n = torch.norm(torch.ones(2))
"""


@pytest.mark.parametrize(
    ("target", "expected"),
    [(None, [2, 4, 6]), ((2, 14), [2, 4, 6]), ((2, 4), [4, 6]), ((2, 1), [6]), ((1, 8), [])],
)
def test_target_torch_drops_later_notices(
    target: tuple[int, ...] | None, expected: list[int]
) -> None:
    findings = Linter(["TS503"], target_torch=target).lint(SOURCE, "t.py")
    assert [f.line for f in findings] == expected
