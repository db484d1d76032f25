"""Does a dataset fit a trained run? Checked before ``torchstyle test`` evaluates on it."""

from __future__ import annotations

from pathlib import Path

from torchstyle.errors import UserError
from torchstyle.spec import DataSpec


def check_data_fits_run(data: DataSpec, run: DataSpec, data_name: str, run_dir: Path) -> None:
    """Refuses data whose classes or channels differ from those a run was trained on.

    Evaluating on them would give wrong figures (renamed classes flip the labels) or crash
    the model (channels). A data folder labelled with the run's classes may lack some.

    Args:
        data: The spec of the data to evaluate on.
        run: The spec the run was trained with.
        data_name: What ``--data`` said, for the message.
        run_dir: The run folder, for the message.

    Raises:
        UserError: The classes or the channels differ; the message names the difference.
    """
    features = "features" in (data.layout, run.layout)
    if features and (data.sample_shape, data.layout) != (run.sample_shape, run.layout):
        raise UserError(
            f"--data {data_name} has samples of {data.describe()} but run {run_dir} was "
            f"trained on {run.describe()}; evaluate on data of the run's shape"
        )
    if data.channels != run.channels:
        raise UserError(
            f"--data {data_name} has {data.channels}-channel images but run {run_dir} was trained "
            f"on {run.channels}-channel images; evaluate on data with {run.channels} channel(s)"
        )
    if tuple(data.class_names) == tuple(run.class_names):
        return
    only_run = [c for c in run.class_names if c not in data.class_names]
    only_data = [c for c in data.class_names if c not in run.class_names]
    if only_run or only_data:
        differences = []
        if only_data:
            differences.append(f"classes the run does not know: {', '.join(only_data)}")
        if only_run:
            differences.append(f"run classes it lacks: {', '.join(only_run)}")
        detail = "; ".join(differences)
    else:
        detail = f"the same classes in another order ({', '.join(data.class_names)})"
    raise UserError(
        f"--data {data_name} does not have run {run_dir}'s classes ({detail}); evaluate on data "
        f"with the run's classes: {', '.join(run.class_names)}"
    )
