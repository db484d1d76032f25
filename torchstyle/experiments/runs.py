"""``torchstyle runs``: one row per run folder, read from ``config.json`` and ``status.json`` only.

No event file is parsed and no checkpoint is opened, so listing a thousand runs takes a
fraction of a second. Rows can be filtered (``--filter lr>0.01``), sorted (``--sort -best``)
and written as an aligned table, JSON or CSV.
"""

from __future__ import annotations

import csv
import io
import json
import math
import operator
import os
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from torchstyle.errors import UserError
from torchstyle.experiments.status import describe, read_status
from torchstyle.experiments.tracking import flat_flags

# How deep `runs DIR` looks for run folders: runs/, a sweep's trials/, one level of grouping.
MAX_DEPTH = 4
COLUMNS = (
    "name",
    "status",
    "model",
    "data",
    "flags",
    "best",
    "best_epoch",
    "test",
    "steps",
    "wall_time",
    "samples_per_sec",
)
_FILTER = re.compile(r"^\s*([A-Za-z_][\w.\-/]*)\s*(!=|>=|<=|=|>|<|~)\s*(.*?)\s*$")
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "=": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
    ">=": operator.ge,
    "<=": operator.le,
}


def _is_run(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "config.json"))


def find_runs(paths: Sequence[str]) -> list[Path]:
    """Every run folder (a folder with ``config.json``) among ``paths`` and below them.

    Raises:
        UserError: A path does not exist.
    """
    found: list[Path] = []
    for p in paths:
        if not os.path.isdir(p):
            raise UserError(f"no such folder: {p}; pass run folders or folders that hold them")
        if _is_run(p):
            found.append(Path(p))
            continue
        stack = [(p, 0)]
        while stack:
            folder, depth = stack.pop()
            with os.scandir(folder) as entries:
                subdirs = sorted(e.path for e in entries if e.is_dir() and e.name[0] != ".")
            for sub in reversed(subdirs):
                if _is_run(sub):
                    found.append(Path(sub))
                elif depth + 1 < MAX_DEPTH:
                    stack.append((sub, depth + 1))
    found.sort()
    return list(dict.fromkeys(found))


def _test_value(status: dict[str, Any], metric: str | None) -> float | None:
    test = status.get("test") or {}
    if metric is None:
        return None
    base = metric.rsplit("/", 1)[-1]
    value = test.get(f"test/{base}", test.get(base))
    return None if value is None else float(value)


def load_run(path: Path) -> dict[str, Any]:
    """One run's row (before the differing flags are known).

    Raises:
        UserError: ``config.json`` does not parse.
    """
    config_path = os.path.join(path, "config.json")
    try:
        with open(config_path, encoding="utf-8") as f:
            config = json.load(f)
    except ValueError as e:
        raise UserError(f"{config_path} does not parse ({e}); fix or move that folder") from None
    status = read_status(path) or {}
    best = status.get("best") or {}
    return {
        "name": str(path),
        "path": str(path),
        "state": status.get("state", "unknown"),
        "status": describe(status) if status else "unknown (no status.json)",
        "model": config.get("model"),
        "data": os.path.basename(str(config.get("data")).rstrip("/")),
        "config": flat_flags(config),
        "flags": {},
        "metric": best.get("metric"),
        "best": best.get("value"),
        "best_epoch": best.get("epoch"),
        "test": _test_value(status, best.get("metric")),
        "steps": status.get("step"),
        "epochs": status.get("epoch"),
        "wall_time": status.get("wall_time"),
        "samples_per_sec": status.get("samples_per_sec"),
        "started_at": status.get("started_at"),
        "error": status.get("error"),
    }


def differing_flags(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The flags whose values are not the same in every row (model and data have columns)."""
    if len(rows) < 2:
        return []
    keys = sorted({k for r in rows for k in r["config"]} - {"model", "data"})
    missing = object()
    differ = []
    for key in keys:
        first = rows[0]["config"].get(key, missing)
        if any(r["config"].get(key, missing) != first for r in rows[1:]):
            differ.append(key)
    return differ


def collect(paths: Sequence[str]) -> list[dict[str, Any]]:
    """The rows of every run under ``paths``, names relative to their common folder."""
    runs = find_runs(paths)
    rows = [load_run(p) for p in runs]
    absolute = [os.path.abspath(p) for p in runs]  # not resolve(): a syscall per component
    if len(runs) > 1:
        common = os.path.commonpath(absolute)
        for row, p in zip(rows, absolute, strict=True):
            row["name"] = p[len(common) :].lstrip(os.sep)
    elif rows:
        rows[0]["name"] = os.path.basename(absolute[0])
    for key in differing_flags(rows):
        for row in rows:
            row["flags"][key] = row["config"].get(key)
    return rows


def _field(row: dict[str, Any], key: str) -> Any:
    if key == "status":
        return row["state"]
    if key in row and key not in ("config", "flags"):
        return row[key]
    if key in row["config"]:
        return row["config"][key]
    raise KeyError(key)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def parse_filter(text: str, known: Iterable[str]) -> Callable[[dict[str, Any]], bool]:
    """A predicate for ``KEY OP VALUE`` (``=``, ``!=``, ``<``, ``<=``, ``>``, ``>=``, ``~`` substring).

    Raises:
        UserError: The expression does not parse or names no column or flag.
    """
    m = _FILTER.match(text)
    if not m:
        raise UserError(
            f"--filter {text!r} does not parse; write KEY OP VALUE, e.g. lr>0.01, status=finished, name~adam"
        )
    key, op, raw = m.groups()
    key = key.replace("-", "_")
    known = set(known)
    if key not in known:
        raise UserError(
            f"--filter {text!r}: no column or flag {key!r}; known: {', '.join(sorted(known))}"
        )
    want_num = _number(raw)

    def check(row: dict[str, Any]) -> bool:
        try:
            value = _field(row, key)
        except KeyError:
            return False
        if op == "~":
            return raw.lower() in str(value if key != "status" else row["status"]).lower()
        have = _number(value)
        if want_num is not None and have is not None:
            return _OPS[op](have, want_num)
        if op in ("=", "!="):
            text_value = json.dumps(value) if not isinstance(value, str) else value
            return _OPS[op](text_value.lower(), raw.lower())
        return False

    return check


def sort_rows(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Sorted by ``key`` (``-key``: descending); rows without a value go last either way.

    Raises:
        UserError: ``key`` names no column or flag.
    """
    descending = key.startswith("-")
    key = key.lstrip("-").replace("-", "_")
    known = (set(COLUMNS) - {"flags"}) | {"state", "started_at", "epochs", "metric"}
    known |= {k for r in rows for k in r["config"]}
    if key not in known:
        raise UserError(
            f"--sort {key!r}: no column or flag by that name; known: {', '.join(sorted(known))}"
        )

    def value(row: dict[str, Any]) -> Any:
        try:
            return _field(row, key)
        except KeyError:
            return None

    present = [r for r in rows if value(r) is not None]
    absent = [r for r in rows if value(r) is None]
    numeric = all(_number(value(r)) is not None for r in present)
    sort_key: Callable[[dict[str, Any]], Any] = (
        (lambda r: _number(value(r))) if numeric else (lambda r: str(value(r)))
    )
    return sorted(present, key=sort_key, reverse=descending) + absent


def _fmt_number(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.3g}"
    return str(value)


def _fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = round(seconds)
    if s < 60:
        return f"{seconds:.1f}s"
    h, rest = divmod(s, 3600)
    return f"{h}h{rest // 60:02d}m" if h else f"{s // 60}m{s % 60:02d}s"


def _cells(row: dict[str, Any]) -> dict[str, str]:
    best = "-" if row["best"] is None else f"{row['metric']} {row['best']:.4f}"
    return {
        "name": row["name"],
        "status": _shortened(row["status"]),
        "model": str(row["model"]),
        "data": str(row["data"]),
        "flags": " ".join(f"{k}={flag_text(v)}" for k, v in row["flags"].items()) or "-",
        "best": best,
        "best_epoch": _fmt_number(row["best_epoch"]),
        "test": _fmt_number(row["test"]),
        "steps": _fmt_number(row["steps"]),
        "wall_time": _fmt_duration(row["wall_time"]),
        "samples_per_sec": "-"
        if row["samples_per_sec"] is None
        else f"{row['samples_per_sec']:.0f}",
    }


#: The widest status cell of the table; ``--format json`` (and csv) hold the whole text.
STATUS_WIDTH = 60


def _shortened(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= STATUS_WIDTH else text[: STATUS_WIDTH - 3].rstrip() + "..."


def flag_text(value: Any) -> str:
    """A flag's value as the table and the plot legends show it."""
    if value is None:  # an unset flag: the model's or data's own default
        return "default"
    if isinstance(value, float):
        return f"{value:.4g}"
    return value if isinstance(value, str) else json.dumps(value)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Aligned columns, one line per run (an empty listing says so)."""
    if not rows:
        return "no runs found\n"
    headers = {c: c.replace("_", " ") for c in COLUMNS}
    headers.update(best_epoch="epoch", samples_per_sec="samples/s", wall_time="wall")
    cells = [_cells(r) for r in rows]
    widths = {c: max(len(headers[c]), *(len(x[c]) for x in cells)) for c in COLUMNS}
    right = {"best_epoch", "test", "steps", "wall_time", "samples_per_sec"}

    def line(values: dict[str, str]) -> str:
        parts = [
            values[c].rjust(widths[c]) if c in right else values[c].ljust(widths[c])
            for c in COLUMNS
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(x) for x in cells)]) + "\n"


def _plain(row: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k != "config"}


def format_json(rows: Sequence[dict[str, Any]]) -> str:
    """A JSON list of rows; ``flags`` holds the differing flags."""
    return json.dumps([_plain(r) for r in rows], indent=1) + "\n"


def format_csv(rows: Sequence[dict[str, Any]]) -> str:
    """CSV with one column per differing flag (named ``flag:NAME``)."""
    flags = sorted({k for r in rows for k in r["flags"]})
    fields = ["name", "state", "status", "model", "data", *(f"flag:{f}" for f in flags)]
    fields += ["metric", "best", "best_epoch", "test", "steps", "epochs", "wall_time"]
    fields += ["samples_per_sec", "started_at", "error", "path"]
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        record = {k: r.get(k) for k in fields if not k.startswith("flag:")}
        record.update({f"flag:{f}": json.dumps(r["flags"].get(f)) for f in flags})
        writer.writerow(record)
    return out.getvalue()


FORMATS = {"table": format_table, "json": format_json, "csv": format_csv}


def list_runs(
    paths: Sequence[str], *, filters: Sequence[str] = (), sort: str | None = None
) -> list[dict[str, Any]]:
    """The rows of ``torchstyle runs``: collected, filtered, then sorted.

    Args:
        paths: Run folders or folders holding them.
        filters: ``KEY OP VALUE`` expressions, all of which must hold.
        sort: A column or flag, ``-`` first for descending.

    Returns:
        The rows, as dicts (see :func:`load_run`).
    """
    rows = collect(paths)
    known = (set(COLUMNS) - {"flags"}) | {"state", "metric", "epochs", "error", "started_at"}
    known |= {k for r in rows for k in r["config"]}
    for text in filters:
        check = parse_filter(text, known)
        rows = [r for r in rows if check(r)]
    if sort:
        rows = sort_rows(rows, sort)
    return rows
