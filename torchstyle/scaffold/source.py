"""Where a generated project gets torchstyle from: the line in its ``pyproject.toml``.

A project must install on a machine where no package index serves torchstyle, so the line
names the generating version and, when that torchstyle was not installed from an index, the
source it came from as a direct reference (PEP 508 ``torchstyle @ URL``):

* installed from an index (no ``direct_url.json``): ``torchstyle==VERSION``;
* installed from a folder, a wheel or a VCS URL (``pip install -e .``, ``pip install
  git+...``): ``torchstyle @ URL`` with the URL pip recorded (PEP 610);
* not installed (run from a checkout on ``PYTHONPATH``): ``torchstyle @ file:///CHECKOUT``.

``--torchstyle-source`` overrides the guess: a folder or wheel (made a ``file://`` URL), a
URL (``git+https://...``), or ``index`` for the plain pin.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from torchstyle.errors import UserError

DISTRIBUTION = "torchstyle"
INDEX = "index"
# The checkout this module runs from, when it is one (a pyproject.toml next to the package).
_CHECKOUT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Requirement:
    """The dependency line of a generated project and the version it was made with."""

    line: str
    version: str


def _installed_url() -> str | None:
    """The URL pip recorded for an installed torchstyle, or None (index install, or none)."""
    try:
        dist = metadata.distribution(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        return None
    if not _same_package(dist):
        return None
    text = dist.read_text("direct_url.json")
    if not text:
        return None
    info = json.loads(text)
    url = str(info.get("url", ""))
    vcs = info.get("vcs_info")
    if vcs and url:
        return f"{vcs.get('vcs', 'git')}+{url}@{vcs.get('commit_id', '')}".rstrip("@")
    return url or None


def _same_package(dist: metadata.Distribution) -> bool:
    # A checkout on PYTHONPATH can run while another torchstyle is installed: only trust the
    # installed metadata when it describes the files this module was imported from.
    files = dist.files or []
    for entry in files:
        if entry.name == "source.py" and entry.parent.name == "scaffold":
            return Path(str(entry.locate())).resolve() == Path(__file__).resolve()
    text = dist.read_text("direct_url.json") or ""
    if text:
        url = str(json.loads(text).get("url", ""))
        return url.startswith("file://") and Path(url[len("file://") :]).resolve() == _CHECKOUT
    return False


def _checkout_url() -> str | None:
    pyproject = _CHECKOUT / "pyproject.toml"
    if pyproject.is_file() and f'name = "{DISTRIBUTION}"' in pyproject.read_text("utf-8"):
        return _CHECKOUT.as_uri()
    return None


def _from_option(source: str) -> str | None:
    if source == INDEX:
        return None
    if "://" in source:
        return source
    path = Path(source).expanduser()
    if not path.exists():
        raise UserError(
            f"--torchstyle-source {source}: no such folder or wheel; give a torchstyle checkout, "
            "a wheel, a URL (git+https://...), or 'index'"
        )
    return path.resolve().as_uri()


def torchstyle_requirement(source: str | None = None) -> Requirement:
    """The line a generated project's ``pyproject.toml`` depends on torchstyle with.

    Args:
        source: ``--torchstyle-source``: a folder, a wheel, a URL, or ``index``; None guesses
            from how this torchstyle was installed.

    Returns:
        The requirement line and the generating version.

    Raises:
        UserError: ``source`` is a path that does not exist.
    """
    from torchstyle import __version__

    url = _from_option(source) if source is not None else (_installed_url() or _checkout_url())
    line = f"{DISTRIBUTION} @ {url}" if url else f"{DISTRIBUTION}=={__version__}"
    return Requirement(line=line, version=__version__)
