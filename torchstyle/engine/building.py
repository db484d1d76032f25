"""The model a run trains: built from ``--model``, given by the caller, or rebuilt on resume;
then initialised from ``--weights`` and partly frozen by ``--freeze``.

Kept apart from ``setup.py`` (batches, schedules, run folder): this is the one place where
the engine meets users' models.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torchstyle.config import TrainConfig
from torchstyle.engine.programs import replayable, resume_refusal
from torchstyle.engine.weights import freeze, load_weights
from torchstyle.models.base import TorchstyleModel
from torchstyle.models.loading import (
    ModelBuild,
    build_for_data,
    model_defaults,
    rebuild_for_run,
    record_for_object,
)
from torchstyle.models.sources import ModelSource, save_copy
from torchstyle.spec import DataSpec

log = logging.getLogger(__name__)


def model_preferences(
    source: ModelSource | None, model: TorchstyleModel | None
) -> tuple[int | None, str]:
    """The image size and folder layout the model wants, known before the data is built."""
    if model is not None or source is None:
        cls = type(model) if model is not None else TorchstyleModel
        return cls.default_image_size, cls.data_layout
    return model_defaults(source)


def model_class(source: ModelSource | None) -> type[TorchstyleModel]:
    """The class whose defaults (learning rate, optimizer, data) a run of ``source`` takes.

    Library and file models train through a task adapter, which keeps the base defaults.
    """
    if source is None or source.kind != "registered":
        return TorchstyleModel
    from torchstyle.models import get_model_class

    return get_model_class(source.target)


def default_data(source: ModelSource | None, model: TorchstyleModel | None) -> str:
    """The data a run trains on when ``--data`` is not given: the model's own."""
    return (type(model) if model is not None else model_class(source)).default_data


@dataclass(frozen=True)
class ModelSettings:
    """What building and initialising a model reads of the run's settings, no more.

    Attributes:
        args: ``--model-arg`` values.
        weights: ``--weights``: a file to initialise from (None: untrained).
        freeze: ``--freeze`` prefixes.
    """

    args: dict[str, Any] = field(default_factory=dict)
    weights: str | None = None
    freeze: tuple[str, ...] = ()

    @classmethod
    def of(cls, cfg: TrainConfig) -> ModelSettings:
        """The model settings of a training run."""
        return cls(dict(cfg.model_args), cfg.weights, tuple(cfg.freeze))


def prepare_model(
    settings: ModelSettings,
    spec: DataSpec,
    *,
    source: ModelSource | None = None,
    model: TorchstyleModel | None = None,
    record: dict[str, Any] | None = None,
    resume_state: dict[str, Any] | None = None,
    run_dir: Path,
) -> ModelBuild:
    """The model to train and its run record.

    Args:
        settings: ``--model-arg``, ``--weights`` and ``--freeze``.
        spec: The data's channels, size and classes.
        source: ``--model``, parsed once by the run's builder.
        model: A model the caller built (``Trainer(model=...)``, ``torchstyle.fit``).
        record: Its run record, when the caller knows it (``torchstyle.fit`` does).
        resume_state: The checkpoint being resumed: the model is rebuilt from its record.
        run_dir: The run folder (where a resumed run keeps its copy of the model file).

    Raises:
        UserError: The model cannot be built, or the weights do not fit it.
        ValueError: Neither a model nor a parsed source was given.
    """
    if model is not None:
        rec = record if record is not None else _record_of(model)
        build = ModelBuild(model, rec)
    elif resume_state is not None and isinstance(resume_state.get("model", {}).get("source"), dict):
        rec = resume_state["model"]["source"]
        if not replayable(rec):
            raise resume_refusal(rec, run_dir)
        build = ModelBuild(rebuild_for_run(resume_state["model"], spec, run_dir), rec)
    elif source is not None:
        build = build_for_data(source, settings.args, spec)
    else:
        raise ValueError("prepare_model needs a model or the parsed --model (source)")
    if settings.weights and resume_state is None:  # a resumed run's are its checkpoint's
        report = load_weights(build.model, Path(settings.weights))
        build.notes.extend(line.strip() for line in report.lines(Path(settings.weights)))
    if settings.freeze:
        frozen = freeze(build.model, list(settings.freeze))
        build.notes.append(f"froze {frozen} parameter tensors ({', '.join(settings.freeze)})")
    return build


def _record_of(model: TorchstyleModel) -> dict[str, Any]:
    _, rec = record_for_object(model, None)
    return {**rec, "adapter": "none"}


def keep_model_file(record: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Copies a user's model file into the run folder (main process only); returns the record."""
    origin = record.get("origin")
    if origin and not Path(origin).is_file() and not record.get("copy"):
        return record  # nothing left to copy; the record still says where it was
    return save_copy(record, run_dir)
