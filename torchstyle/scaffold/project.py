"""Renders and writes a new project from the templates under ``templates/``.

A template is a folder, ``templates/<template>/``, holding the files of one kind of project;
``templates/common/`` holds the files every project gets (a template's own file of the same
name wins). A new template is a new folder: nothing here names one.

Template files are the project's files with three conventions, so that they are never taken
for this package's own code (ruff, pytest and ``torchstyle lint`` skip them):

* every file ends in ``.tmpl``, which is dropped;
* a leading ``dot-`` becomes ``.`` (``dot-gitignore`` -> ``.gitignore``), since package data
  globs skip dotfiles;
* ``{{name}}`` (the module name), ``{{Name}}`` (the model's class name), ``{{template}}``,
  ``{{description}}``, ``{{requirement}}`` (the dependency on torchstyle) and
  ``{{version}}`` (torchstyle's) are replaced in file names and contents; ``about.txt``
  holds the template's one-line description and is not copied.

A file of ``common/`` can be a skeleton that every template fills in: a line holding only
``{{>part}}`` is replaced by the part of that name from the template's ``FILE.parts`` (for
``train.py.tmpl``, ``train.py.parts``), indented as the marker is. A parts file is a run of
sections, each opened by a line ``@@ part``. The loop the three templates share is written
once, and each template's file still reads as one script.

Nothing here imports torch: ``torchstyle new`` starts in a fraction of a second.
"""

from __future__ import annotations

import json
import keyword
import re
import sys
import unicodedata
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from torchstyle import writes
from torchstyle.errors import UserError
from torchstyle.scaffold.source import Requirement, torchstyle_requirement

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
COMMON = "common"
DEFAULT_TEMPLATE = "classifier"
ABOUT_FILE = "about.txt"
SUFFIX = ".tmpl"
DOT_PREFIX = "dot-"
# What a project was made from (template, versions, the rendered files): the base of the
# three-way merge of `torchstyle new --update`.
RECORD = PurePosixPath(".torchstyle/template.json")

# The project's own modules: NAME must not collide with them (``import data`` in train.py
# would find the model file instead, or the other way round).
PROJECT_MODULES = frozenset(
    {"layers", "networks", "losses", "ops", "data", "run", "train", "test", "tests", "conftest"}
)
# Packages a project imports besides the standard library; a module of the same name in the
# project folder would shadow them, since a script's own folder comes first on sys.path.
SHADOWED_PACKAGES = frozenset(
    {
        "torch",
        "torchstyle",
        "torchvision",
        "torchaudio",
        "numpy",
        "tqdm",
        "tensorboard",
        "sklearn",
        "scipy",
        "pytest",
        "setuptools",
        "pip",
    }
)
_LOWER_WITH_UNDER = re.compile(r"^[a-z][a-z0-9_]*$")
_PLACEHOLDER = re.compile(r"\{\{\s*(\w+)\s*\}\}")
_PART_MARKER = re.compile(r"^(?P<indent>[ ]*)\{\{>(?P<part>[\w-]+)\}\}\n", re.MULTILINE)
_PART_HEADER = re.compile(r"^@@ (?P<part>[\w-]+)$", re.MULTILINE)
PARTS_SUFFIX = ".parts"
# One line of a project-local import (``from networks import Generator``). Runs of these are
# re-sorted after substitution, because where ``{{name}}`` sorts depends on the name.
_LOCAL_IMPORT = re.compile(r"^from ([a-z_][a-z0-9_]*) import \S.*$")


@dataclass(frozen=True)
class Template:
    """One kind of project: its folder name and a one-line description."""

    name: str
    description: str


def list_templates(templates_dir: Path = TEMPLATES_DIR) -> list[Template]:
    """Returns the available templates, sorted by name."""
    found = []
    for folder in sorted(templates_dir.iterdir()):
        about = folder / ABOUT_FILE
        if folder.is_dir() and folder.name != COMMON and about.is_file():
            found.append(Template(folder.name, about.read_text(encoding="utf-8").strip()))
    return found


def template_names() -> list[str]:
    """Returns the names ``--template`` accepts."""
    return [t.name for t in list_templates()]


def class_name(name: str) -> str:
    """The model's class name for module ``name``: ``digit_net`` -> ``DigitNet``."""
    return "".join(part[:1].upper() + part[1:] for part in name.split("_") if part)


def _problem(name: str) -> str | None:
    """What is wrong with ``name`` as a project name, or None."""
    if not name.isidentifier():
        return "is not a Python identifier (letters, digits and _, not starting with a digit)"
    if not name.isascii():
        return (
            "is a Python identifier, but it is also the project's distribution name in "
            "pyproject.toml, which packaging takes in ASCII only (letters, digits, '_', '-', '.')"
        )
    if keyword.iskeyword(name) or keyword.issoftkeyword(name):
        return "is a Python keyword"
    if not _LOWER_WITH_UNDER.match(name):
        return f"is not lower_with_under (the guide's module names; it becomes {name}.py)"
    if name in PROJECT_MODULES:
        return f"is one of the project's own files ({', '.join(sorted(PROJECT_MODULES))})"
    if name in SHADOWED_PACKAGES:
        return f"would shadow the package {name!r} that the project imports"
    if name in sys.stdlib_module_names:
        return f"would shadow the standard library module {name!r}"
    return None


def _suggest(name: str) -> str:
    """A valid name close to ``name``: ``MyNet`` -> ``my_net``, ``résumé`` -> ``resume``."""
    # Letters with accents lose them (NFKD splits them off), so the meaning survives.
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode("ascii")
    snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", ascii_name)
    snake = re.sub(r"[^a-z0-9]+", "_", snake.lower()).strip("_").lstrip("0123456789_")
    for candidate in (snake, f"{snake}_net"):
        if snake and candidate != name and _problem(candidate) is None:
            return candidate
    return "my_model"


def validate_name(name: str) -> None:
    """Checks that ``name`` can be the project's model module and folder.

    Raises:
        UserError: ``name`` is not a lower_with_under Python identifier, is a keyword, or
            would shadow a module the project imports (the standard library, torch,
            torchstyle, ...) or one of its own files. The message says why and suggests a
            name that works.
    """
    problem = _problem(name)
    if problem is not None:
        raise UserError(f"project name {name!r} {problem}; use e.g. {_suggest(name)!r}")


class TemplateError(Exception):
    """A template is broken (an unknown placeholder or part): a bug in torchstyle, not input."""


def _template_dir(template: str, templates_dir: Path) -> Path:
    names = [t.name for t in list_templates(templates_dir)]
    if template not in names:
        raise UserError(f"unknown template {template!r}; choose from {', '.join(names)}")
    return templates_dir / template


def _target_path(relative: PurePosixPath, replacements: dict[str, str]) -> PurePosixPath:
    parts = []
    for part in relative.parts:
        if part.startswith(DOT_PREFIX):
            part = "." + part[len(DOT_PREFIX) :]
        part = part.removesuffix(SUFFIX)
        parts.append(_substitute(part, replacements, str(relative)))
    return PurePosixPath(*parts)


def _substitute(text: str, replacements: dict[str, str], where: str) -> str:
    def replace(match: re.Match[str]) -> str:
        key = match.group(1)
        if key not in replacements:
            raise TemplateError(f"template {where}: unknown placeholder {match.group(0)}")
        return replacements[key]

    return _PLACEHOLDER.sub(replace, text)


def read_parts(path: Path) -> dict[str, str]:
    """The sections of a parts file: ``@@ name`` line -> the text up to the next one."""
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    headers = list(_PART_HEADER.finditer(text))
    parts = {}
    ends = [header.start() for header in headers[1:]] + [len(text)]
    for header, end in zip(headers, ends[: len(headers)], strict=True):
        parts[header.group("part")] = text[header.end() + 1 : end].rstrip("\n")
    return parts


def fill_parts(skeleton: str, parts: dict[str, str], where: str) -> str:
    """Replaces each ``{{>part}}`` line of ``skeleton`` by that part, at the marker's indent."""

    def replace(match: re.Match[str]) -> str:
        name, indent = match.group("part"), match.group("indent")
        if name not in parts:
            raise TemplateError(f"template {where}: no part {name!r} for {match.group(0)}")
        if not parts[name]:  # an empty part takes its line with it
            return ""
        lines = parts[name].split("\n")
        return "".join((indent + line if line else line) + "\n" for line in lines)

    return _PART_MARKER.sub(replace, skeleton)


def sort_local_imports(source: str, local_modules: frozenset[str]) -> str:
    """Sorts each run of ``from <local module> import ...`` statements by module.

    Isort (and ruff) order first-party imports alphabetically, and where the model module
    falls among ``data``, ``layers``, ``networks``... depends on its name. A statement is one
    line, or a parenthesized one up to its closing line.
    """
    lines = source.split("\n")
    out: list[str] = []
    run: list[list[str]] = []

    def flush() -> None:
        for statement in sorted(run, key=lambda lines: lines[0].split()[1]):
            out.extend(statement)
        run.clear()

    i = 0
    while i < len(lines):
        match = _LOCAL_IMPORT.match(lines[i])
        if match and match.group(1) in local_modules:
            end = i
            if lines[i].endswith("("):
                while end + 1 < len(lines) and lines[end] != ")":
                    end += 1
            run.append(lines[i : end + 1])
            i = end + 1
            continue
        flush()
        out.append(lines[i])
        i += 1
    flush()
    return "\n".join(out)


def render_project(
    name: str,
    template: str,
    *,
    requirement: Requirement | None = None,
    templates_dir: Path = TEMPLATES_DIR,
) -> dict[PurePosixPath, str]:
    """Returns the files of a new project, relative path -> text, without writing anything.

    Args:
        name: The project's name (already validated): its folder's default name, its model
            module ``NAME.py`` and, in CapWords, its model class.
        template: A name from :func:`template_names`.
        requirement: The project's dependency on torchstyle; default: guessed from how
            this torchstyle is installed (see :mod:`torchstyle.scaffold.source`).
        templates_dir: Where the templates are (another version of them, in tests).
    """
    folder = _template_dir(template, templates_dir)
    requirement = requirement or torchstyle_requirement()
    description = (folder / ABOUT_FILE).read_text(encoding="utf-8").strip()
    replacements = {
        "name": name,
        "Name": class_name(name),
        "template": template,
        "description": description,
        "requirement": requirement.line,
        "version": requirement.version,
    }
    local_modules = PROJECT_MODULES | {name}
    files: dict[PurePosixPath, str] = {}
    for source_dir in (templates_dir / COMMON, folder):  # the template's own files win
        for path in sorted(source_dir.rglob("*" + SUFFIX)):
            relative = PurePosixPath(path.relative_to(source_dir).as_posix())
            target = _target_path(relative, replacements)
            text = path.read_text(encoding="utf-8")
            parts = read_parts(folder / relative.with_suffix(PARTS_SUFFIX))
            text = fill_parts(text, parts, f"{template}/{relative}")
            text = _substitute(text, replacements, str(relative))
            if target.suffix == ".py":
                text = sort_local_imports(text, local_modules)
            files[target] = text
    return dict(sorted(files.items()))


def template_record(
    name: str, template: str, requirement: Requirement, files: dict[PurePosixPath, str]
) -> str:
    """The text of :data:`RECORD`: what ``torchstyle new --update`` merges from.

    It holds the rendered files themselves, not just the version: a later torchstyle can
    render its own templates but not the ones this project was made from, and a three-way
    merge needs both.
    """
    record = {
        "template": template,
        "name": name,
        "torchstyle_version": requirement.version,
        "requirement": requirement.line,
        "files": {str(path): text for path, text in files.items()},
    }
    return json.dumps(record, indent=1, ensure_ascii=False) + "\n"


def write_project(
    name: str,
    template: str,
    directory: Path | None = None,
    *,
    force: bool = False,
    requirement: Requirement | None = None,
    templates_dir: Path = TEMPLATES_DIR,
) -> tuple[Path, list[Path]]:
    """Writes a new project, and :data:`RECORD` (the template it was made from).

    Every file is rendered before the first is written, so a failure leaves nothing behind.

    Args:
        name: The project's name (see :func:`validate_name`).
        template: A name from :func:`template_names`.
        directory: The project folder; default ``./NAME``.
        force: Write into an existing, non-empty folder, replacing the files this command
            writes. Other files in it are left alone.
        requirement: The dependency on torchstyle (default: see :func:`render_project`).
        templates_dir: Where the templates are (another version of them, in tests).

    Returns:
        The project folder and the paths written, in order.

    Raises:
        UserError: Bad name or template, or the folder exists and is not empty (without
            ``force``), or it is a file.
    """
    validate_name(name)
    root = Path(directory) if directory is not None else Path(name)
    requirement = requirement or torchstyle_requirement()
    files = render_project(name, template, requirement=requirement, templates_dir=templates_dir)
    if root.exists() and not root.is_dir():
        raise UserError(f"{root} exists and is not a folder; choose another --dir")
    if root.is_dir() and any(root.iterdir()) and not force:
        raise UserError(
            f"folder {root} already exists and is not empty; choose another --dir, or pass "
            "--force to overwrite the files `torchstyle new` writes (others are kept)"
        )
    everything = {**files, RECORD: template_record(name, template, requirement, files)}
    for relative in everything:
        target = root.joinpath(*relative.parts)
        if target.is_dir():
            raise UserError(f"{target} is a folder, where the project needs a file; remove it")
    written = []
    for relative, text in everything.items():
        target = root.joinpath(*relative.parts)
        writes.atomic_write_text(target, text, fix="or pass another --dir")
        written.append(target)
    return root, written
