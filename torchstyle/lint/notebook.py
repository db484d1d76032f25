"""Jupyter notebooks (``.ipynb``): their code cells as one module, and fixes written back.

The code cells are joined, in order, into one Python module, so that a name defined in one
cell is known in the next. IPython syntax that is not Python (``%time``, ``%%capture``,
``!pip install``, ``x = !ls``, ``obj?``) is masked: the line becomes ``pass`` with the same
indentation, so it is neither parsed nor reported, and line numbers stay put. Cells whose
cell magic runs another language (``%%bash``, ``%%writefile``) are masked whole.

Findings come back with the cell (1-based, counting code cells as ruff does) and the line
within it. Fixes are applied to the joined module, split back into cells, and written into
the notebook's JSON text only where a cell's source changed: outputs, metadata, indentation
and the trailing newline stay byte-identical.
"""

from __future__ import annotations

import bisect
import json
import re
from dataclasses import dataclass, field, replace

from torchstyle.lint.base import Edit, Finding, Fix

#: Cell magics whose body is still Python (only the magic line is masked).
_PYTHON_CELL_MAGICS = frozenset(
    {"time", "timeit", "capture", "prun", "debug", "python", "python3", "pypy", "memit"}
)
_MAGIC_LINE = re.compile(r"^(\s*)(?:[%!?]|\w[\w.]*\?\??\s*$|[\w.\[\], ]+=\s*[%!])")
_MASK = "{indent}pass  # torchstyle: masked {index}"
_MASKED = re.compile(r"^\s*pass  # torchstyle: masked (\d+)$")


class NotebookError(ValueError):
    """The bytes are not a notebook torchstyle can read (invalid JSON, no cells list)."""


@dataclass
class _Cell:
    """One code cell: where its ``source`` value lies in the JSON text, and its code."""

    number: int  # 1-based among code cells
    span: tuple[int, int]  # the ``source`` value's character range in the JSON text
    text: str
    as_list: bool
    first_line: int = 0  # 1-based line of the cell's first line in the joined module
    start: int = 0  # character offset of the cell in the joined module
    line_count: int = 1
    #: Where each line starts in the masked body and in the cell's own text.
    starts: tuple[list[int], list[int]] = ([0], [0])

    def offset(self, joined: int) -> int | None:
        """The offset in the cell's own text of offset ``joined`` of the joined module."""
        masked, own = self.starts
        rel = joined - self.start
        index = bisect.bisect_right(masked, rel) - 1
        if index < 0 or index >= len(own):
            return None
        return own[index] + rel - masked[index]


@dataclass
class Notebook:
    """A notebook's JSON text and its code cells joined into one module."""

    raw: str
    cells: list[_Cell] = field(default_factory=list)
    source: str = ""
    masked: list[str] = field(default_factory=list)

    def locate(self, line: int) -> tuple[_Cell, int] | None:
        """The cell holding line ``line`` of the joined module, and the line within it."""
        found = None
        for cell in self.cells:
            if cell.first_line <= line:
                found = cell
        if found is None:
            return None
        return found, min(line - found.first_line + 1, found.line_count)

    def to_cells(self, finding: Finding) -> Finding:
        """``finding`` (in joined-module lines) with the cell and the line within the cell."""
        start = self.locate(finding.line)
        if start is None:
            return replace(finding, cell=self.cells[0].number if self.cells else 1)
        cell, line = start
        end = self.locate(finding.end_line)
        end_line = end[1] if end is not None and end[0] is cell else line
        fix = finding.fix
        if fix is not None:
            spans = [(cell.offset(e.start), cell.offset(e.end), e.text) for e in fix.edits]
            edits = tuple(Edit(a, b, t) for a, b, t in spans if a is not None and b is not None)
            # an edit outside the cell (or in a masked line) cannot be applied to the cell alone
            fine = len(edits) == len(spans) and all(
                0 <= e.start <= e.end <= len(cell.text) for e in edits
            )
            fix = Fix(edits, fix.applicability) if fine else None
        return replace(finding, line=line, end_line=end_line, fix=fix, cell=cell.number)

    def with_source(self, new_source: str) -> str | None:
        """The notebook's JSON text after the joined module became ``new_source``.

        Returns None when the fixed module cannot be split back into the same cells (a fix
        that crossed a cell boundary or removed a masked line): nothing is written then.
        """
        parts = _BOUNDARY.split(new_source)
        if len(parts) != len(self.cells) + 1 or not self.cells:
            return self.raw if not self.cells and not new_source else None
        parts[1] = parts[0] + parts[1]  # a fix that added a line at the very top
        out, pos, restored = [], 0, 0
        for cell, text in zip(self.cells, parts[1:], strict=True):
            text, count = _unmask(text, self.masked)
            restored += count
            if not cell.text.endswith("\n") and text.endswith("\n"):
                text = text[:-1]
            if text == cell.text:
                continue
            out.append(self.raw[pos : cell.span[0]])
            out.append(_dump_source(text, cell.as_list, self.raw, cell.span))
            pos = cell.span[1]
        if restored != len(self.masked):
            return None
        out.append(self.raw[pos:])
        return "".join(out)


_BOUNDARY = re.compile(r"^# torchstyle: cell \d+\n", re.MULTILINE)


def _unmask(text: str, masked: list[str]) -> tuple[str, int]:
    """``text`` with its masked lines restored, and how many were."""
    lines = text.split("\n")
    count = 0
    for i, line in enumerate(lines):
        match = _MASKED.match(line)
        if match is not None and int(match.group(1)) < len(masked):
            lines[i] = masked[int(match.group(1))]
            count += 1
    return "\n".join(lines), count


def _mask_cell(text: str, masked: list[str]) -> str:
    lines = text.split("\n")
    first = lines[0].strip()
    whole = first.startswith("%%") and first[2:].split(" ")[0] not in _PYTHON_CELL_MAGICS
    out = []
    continued = False
    for line in lines:
        match = _MAGIC_LINE.match(line)
        if line.strip() and (whole or continued or match is not None):
            indent = match.group(1) if match is not None and not whole else ""
            out.append(_MASK.format(indent=indent, index=len(masked)))
            masked.append(line)
            continued = line.endswith("\\")  # a magic continued on the next line
        else:
            out.append(line)
    return "\n".join(out)


def parse(raw: str) -> Notebook:
    """Reads a notebook's JSON text.

    Raises:
        NotebookError: the text is not a notebook (with a reason fit for one line).
    """
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise NotebookError(f"invalid notebook JSON: {e}") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise NotebookError("not a Jupyter notebook: no `cells` list")
    language = data.get("metadata", {}).get("language_info", {}).get("name", "python")
    notebook = Notebook(raw)
    if isinstance(language, str) and language.lower() not in ("python", "python3", "ipython"):
        return notebook  # an R or Julia notebook: nothing of ours to check
    spans = _source_spans(raw)
    number = 0
    for cell, span in zip(data["cells"], spans, strict=False):
        if not isinstance(cell, dict) or cell.get("cell_type") != "code":
            continue
        number += 1
        value = cell.get("source", "")
        if span is None or not isinstance(value, (str, list)):
            continue
        text = value if isinstance(value, str) else "".join(str(v) for v in value)
        notebook.cells.append(_Cell(number, span, text, isinstance(value, list)))
    _join(notebook)
    return notebook


def from_cells(texts: list[str]) -> Notebook:
    """A notebook made of the code cells ``texts`` (an editor's notebook document)."""
    notebook = Notebook("")
    notebook.cells = [_Cell(i, (0, 0), text, False) for i, text in enumerate(texts, start=1)]
    _join(notebook)
    return notebook


def _join(notebook: Notebook) -> None:
    parts: list[str] = []
    line, offset = 1, 0
    for cell in notebook.cells:
        header = f"# torchstyle: cell {cell.number}\n"
        body = _mask_cell(cell.text, notebook.masked)
        if not body.endswith("\n"):
            body += "\n"
        cell.first_line = line + 1
        cell.line_count = max(body.count("\n"), 1)
        cell.starts = (_line_starts(body), _line_starts(cell.text))
        cell.start = offset + len(header)
        parts += [header, body]
        line += 1 + body.count("\n")
        offset += len(header) + len(body)
    notebook.source = "".join(parts)


def _line_starts(text: str) -> list[int]:
    starts = [0]
    for line in text.split("\n")[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    return starts


def _source_spans(raw: str) -> list[tuple[int, int] | None]:
    """The character range of each cell's ``source`` value in the JSON text, in cell order."""
    decoder = json.JSONDecoder()
    top = _members(raw, _skip_space(raw, 0), decoder)
    cells = top.get("cells")
    if cells is None or raw[cells[0]] != "[":
        return []
    spans: list[tuple[int, int] | None] = []
    i = _skip_space(raw, cells[0] + 1)
    while raw[i] != "]":
        members = _members(raw, i, decoder) if raw[i] == "{" else {}
        spans.append(members.get("source"))
        _, end = decoder.raw_decode(raw, i)
        i = _skip_space(raw, end)
        if raw[i] == ",":
            i = _skip_space(raw, i + 1)
    return spans


def _members(raw: str, i: int, decoder: json.JSONDecoder) -> dict[str, tuple[int, int]]:
    """Key -> value range of the JSON object starting at ``raw[i]`` (``{``)."""
    out: dict[str, tuple[int, int]] = {}
    if raw[i] != "{":
        return out
    i = _skip_space(raw, i + 1)
    while raw[i] != "}":
        key, i = json.decoder.scanstring(raw, i + 1)  # type: ignore[attr-defined]
        i = _skip_space(raw, i)
        i = _skip_space(raw, i + 1)  # the colon
        _, end = decoder.raw_decode(raw, i)
        out[key] = (i, end)
        i = _skip_space(raw, end)
        if raw[i] == ",":
            i = _skip_space(raw, i + 1)
    return out


def _skip_space(raw: str, i: int) -> int:
    while raw[i] in " \t\r\n":
        i += 1
    return i


def _dump_source(text: str, as_list: bool, raw: str, span: tuple[int, int]) -> str:
    """``text`` as a ``source`` value written in the style of the original value."""
    ascii_only = "\\u" in raw and not any(ord(c) > 127 for c in raw)
    if not as_list:
        return json.dumps(text, ensure_ascii=ascii_only)
    items = [json.dumps(line, ensure_ascii=ascii_only) for line in text.splitlines(True)]
    old = raw[span[0] : span[1]]
    lead = old[1 : len(old) - len(old[1:].lstrip())]
    tail = old[len(old[:-1].rstrip()) : -1]
    if old[1:-1].strip() == "":  # an empty list: indent as nbformat does, one past the key
        line_start = raw.rfind("\n", 0, span[0]) + 1
        key = raw[line_start : span[0]]
        indent = key[: len(key) - len(key.lstrip())]
        lead, tail = "\n" + indent + " ", "\n" + indent
    if not items:
        return "[]"
    if "\n" not in lead:
        return "[" + ", ".join(items) + "]"
    return "[" + lead + ("," + lead).join(items) + tail + "]"
