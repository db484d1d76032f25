"""``torchstyle runs --plot METRIC``: one PNG with a curve per run, labelled by the flags that differ."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from torchstyle import extras, writes
from torchstyle.errors import UserError
from torchstyle.experiments.runs import flag_text


def resolve_tag(available: set[str], metric: str) -> str | None:
    """The logged tag for ``metric``: itself, else ``val/``, ``test/``, ``train/`` + it."""
    for tag in (metric, f"val/{metric}", f"test/{metric}", f"train/{metric}"):
        if tag in available:
            return tag
    return None


def read_curve(run_dir: Path, metric: str) -> tuple[str | None, list[int], list[float]]:
    """The ``(tag, steps, values)`` of ``metric`` in a run's ``metrics.jsonl`` (empty if absent).

    A step logged twice (a resume redid it) keeps its last value.
    """
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return None, [], []
    records = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                records.append(json.loads(line))
            except ValueError:  # a line cut off by a kill
                continue
    tag = resolve_tag({k for r in records for k in r}, metric)
    if tag is None:
        return None, [], []
    points: dict[int, float] = {}
    for r in records:
        if tag in r:
            points[int(r["step"])] = float(r[tag])
    steps = sorted(points)
    return tag, steps, [points[s] for s in steps]


def label(row: dict[str, Any]) -> str:
    """A run's legend entry: its differing flags, else its name."""
    flags = row.get("flags") or {}
    if not flags:
        return str(row["name"])
    return ", ".join(f"{k}={flag_text(v)}" for k, v in flags.items())


def plot_runs(rows: list[dict[str, Any]], metric: str, output: Path) -> tuple[Path, int]:
    """Writes the curves of ``metric`` for ``rows`` to ``output``; returns it and the curve count.

    Raises:
        UserError: No listed run logged the metric, or ``output`` exists.
    """
    if output.exists():
        raise UserError(f"{output} exists; pass another --output or remove it")
    curves = []
    for row in rows:
        tag, steps, values = read_curve(Path(row["path"]), metric)
        if steps:
            curves.append((row, tag, steps, values))
    if not curves:
        raise UserError(
            f"no listed run logged {metric!r}; pass a metrics.jsonl name such as val/accuracy or train/loss"
        )
    extras.require("experiments", "--plot", ("matplotlib",))
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    try:
        for row, _tag, steps, values in curves:
            ax.plot(steps, values, marker="o" if len(steps) < 30 else None, label=label(row))
        tags = sorted({t for _, t, _, _ in curves if t})
        ax.set_xlabel("optimizer step")
        ax.set_ylabel(", ".join(tags))
        ax.set_title(f"{', '.join(tags)} of {len(curves)} runs")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="best")
        fig.tight_layout()
        fmt = output.suffix.lstrip(".").lower() or "png"
        writes.atomic_write(output, lambda f: fig.savefig(f, dpi=100, format=fmt))
    finally:
        plt.close(fig)
    return output, len(curves)
