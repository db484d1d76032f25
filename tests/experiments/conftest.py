"""Tiny real runs on digits for the experiment tests."""

from __future__ import annotations

import json
from pathlib import Path

# Digits' 1,797 images less the held-out validation tenth, in batches of 64.
STEPS_PER_EPOCH = 21
# An 8-wide MLP on digits: an epoch takes a fraction of a second.
TINY = (
    "--model", "mlp", "--model-arg", "hidden=[8]", "--data", "digits",
    "--no-progress", "--log-every", "5",
)  # fmt: skip


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a metrics.jsonl file."""
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
