"""``torchstyle export RUN --format safetensors|pt2``: share a run's best weights.

* ``safetensors``: the weights of the user's network (no pickle, so loading runs no code),
  with the model's source, arguments and data spec as metadata; ``--weights`` reads it back.
* ``pt2``: a ``torch.export`` program of ``forward`` on batches of samples of the training
  data's own shape (``(B, C, H, W)`` images, ``(B, F)`` feature vectors), batch size free;
  load it with ``torch.export.load(path).module()``, without torchstyle or the model's code.
  It expects inputs preprocessed as training saw them (``docs/export.md`` says how).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from torchstyle import writes
from torchstyle.errors import UserError
from torchstyle.output import CommandOutput

_FIX = "or pass --output PATH on a writable disk"

FORMATS = ("safetensors", "pt2")
# Marks a safetensors file written by this command.
EXPORT_FORMAT = "torchstyle-export"


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the ``export`` flags."""
    parser.add_argument("run", help="run folder written by `torchstyle train`")
    parser.add_argument(
        "--format", choices=FORMATS, default="safetensors", help="(default: safetensors)"
    )
    parser.add_argument(
        "--checkpoint", default="best", help="best, latest, or a checkpoint file (default: best)"
    )
    parser.add_argument(
        "--output", help="file to write (default: RUN/export/model.safetensors or model.pt2)"
    )
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    parser.add_argument(
        "--with-preprocessing",
        action="store_true",
        help="pt2: the program takes pixel / 255 and normalises itself (default: it takes "
        "images normalised as FILE.preprocessing.json says)",
    )


def run_export(args: argparse.Namespace) -> CommandOutput:
    """Writes the export; prints its path."""
    run_dir = Path(args.run)
    output = Path(args.output) if args.output else run_dir / "export" / f"model.{args.format}"
    path = export_run(
        run_dir,
        args.format,
        checkpoint=args.checkpoint,
        output=output,
        overwrite=args.overwrite,
        with_preprocessing=args.with_preprocessing,
    )
    hint = (
        f"use it with: torchstyle train --weights {path} ..."
        if args.format == "safetensors"
        else f"load it with: torch.export.load('{path}').module()"
    )
    pre = preprocessing_path(path)
    return CommandOutput(stdout=f"wrote {path}\nand {pre} (how to feed it)\n{hint}\n")


def preprocessing_path(output: Path) -> Path:
    """Where the preprocessing JSON of an export is written: next to it."""
    return output.with_name(f"{output.stem}.preprocessing.json")


def export_run(
    run_dir: Path,
    fmt: str,
    *,
    checkpoint: str = "best",
    output: Path,
    overwrite: bool = False,
    with_preprocessing: bool = False,
) -> Path:
    """Exports a run's checkpoint.

    Args:
        run_dir: The run folder.
        fmt: ``safetensors`` or ``pt2``.
        checkpoint: ``best``, ``latest`` or a checkpoint file.
        output: The file to write.
        overwrite: Replace ``output`` if it exists.
        with_preprocessing: ``pt2``: the program normalises ``pixel / 255`` itself.

    The preprocessing the network expects (size, crop, interpolation, mean, std, channel
    order) is written next to ``output`` as ``NAME.preprocessing.json``.

    Returns:
        The written file.

    Raises:
        UserError: Missing run, an existing output without ``overwrite``, or a model that
            ``torch.export`` cannot trace.
    """
    from torchstyle.engine.evaluation import checkpoint_path

    _check_request(fmt, output, overwrite=overwrite, with_preprocessing=with_preprocessing)
    path = checkpoint_path(run_dir, checkpoint)
    if fmt == "safetensors" and _export_saved_weights(path, output):
        return output
    _export_model(path, run_dir, fmt, output, with_preprocessing=with_preprocessing)
    return output


def _check_request(fmt: str, output: Path, *, overwrite: bool, with_preprocessing: bool) -> None:
    """Refuses an unknown format, an output in the way, and a bake only a program can hold."""
    if fmt not in FORMATS:
        raise UserError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if output.exists() and not overwrite:
        raise UserError(
            f"{output} already exists; pass --overwrite to replace it, or another --output"
        )
    if with_preprocessing and fmt != "pt2":
        raise UserError("--with-preprocessing bakes it into a program: use --format pt2")


def _export_saved_weights(path: Path, output: Path) -> bool:
    """Writes a safetensors export straight from the checkpoint's weights, if it holds them.

    Returns:
        Whether it wrote the export: False for a sharded checkpoint, whose model must be built
        to consolidate the shards.
    """
    from torchstyle.engine.checkpoint import load_checkpoint
    from torchstyle.engine.evaluation import run_spec

    state = load_checkpoint(path, map_location="cpu")
    if "net" not in state:
        return False
    # Weights alone: no model is built, so every run exports.
    writes.make_dirs(output.parent, fix=_FIX)
    _save_safetensors(network_weights(state), output, state, state["spec"])
    _write_preprocessing(output, _preprocessing_of(state, run_spec(state)), baked=False)
    return True


def _export_model(
    path: Path, run_dir: Path, fmt: str, output: Path, *, with_preprocessing: bool
) -> None:
    """Builds the run's model from ``path`` and writes its network as ``fmt``."""
    import torch

    from torchstyle.engine.evaluation import load_run_model, run_spec
    from torchstyle.models import preprocessing
    from torchstyle.models.adapters import unwrap

    model, state = load_run_model(path, torch.device("cpu"), run_dir=run_dir)
    pre = _preprocessing_of(state, run_spec(state))
    preprocessing.remove(model)  # the network alone takes normalised images
    net = unwrap(model).eval()
    spec = run_spec(state)
    writes.make_dirs(output.parent, fix=_FIX)
    if with_preprocessing:
        net = torch.nn.Sequential(preprocessing.Normalize(pre.mean, pre.std), net).eval()
    if fmt == "safetensors":  # sharded: the model consolidates the shards
        _save_safetensors(net.state_dict(), output, state, spec.to_dict())
    else:
        _save_program(net, output, spec.sample_shape, type(model).__name__)
    _write_preprocessing(output, pre, baked=with_preprocessing)


def _write_preprocessing(output: Path, pre: Any, *, baked: bool) -> None:
    """``NAME.preprocessing.json`` next to the export: how to feed it."""
    record = {**pre.to_dict(), "baked_into_program": baked}
    if baked:
        record["value_range"] = "pixel / 255; the program subtracts mean and divides by std"
    writes.atomic_write_text(
        preprocessing_path(output), json.dumps(record, indent=2) + "\n", fix=_FIX
    )


def _preprocessing_of(state: dict[str, Any], spec: Any) -> Any:
    """The run's recorded preprocessing; a run without a record took torchstyle's [-1, 1]."""
    from torchstyle.models import preprocessing

    pre = preprocessing.from_state(state)
    if pre is not None:
        return pre
    order = "RGB" if spec.channels == 3 else "gray"
    mean = [preprocessing.NEUTRAL] * spec.channels
    return preprocessing.Preprocessing(spec.image_size, order, mean, list(mean), "none")


def network_weights(state: dict[str, Any]) -> dict[str, Any]:
    """The user's network's weights in a checkpoint: an adapter's ``net.`` prefix removed, so
    they load into the user's own class (as :func:`~torchstyle.models.adapters.unwrap` does)."""
    source = state.get("model", {}).get("source")
    adapter = source.get("adapter", "none") if isinstance(source, dict) else "none"
    from torchstyle.engine.ema import inference_weights

    weights: dict[str, Any] = inference_weights(state)  # --ema-eval: the average
    if adapter in ("classification", "own-steps"):
        return {k.removeprefix("net."): v for k, v in weights.items() if k.startswith("net.")}
    return weights


def _save_safetensors(
    weights: dict[str, Any], output: Path, state: dict[str, Any], spec: dict[str, Any]
) -> None:
    from safetensors.torch import save

    # Clones: tensors that share storage (tied weights) must be separate in the file.
    tensors = {k: v.detach().cpu().clone().contiguous() for k, v in weights.items()}
    info = state.get("model", {})
    metadata = {
        "format": EXPORT_FORMAT,
        "model": json.dumps(info.get("source") or {"spec": info.get("name")}),
        "hparams": json.dumps(info.get("hparams", {})),
        "spec": json.dumps(spec),
        "epoch": str(state.get("epoch", "")),
    }
    data = save(tensors, metadata=metadata)
    writes.atomic_write(output, lambda f: f.write(data), fix=_FIX)


def _save_program(net: Any, output: Path, shape: tuple[int, ...], name: str) -> None:
    """Traces ``net`` on samples of the training data's own ``shape``, batch size free."""
    import torch

    from torchstyle.engine.programs import trace

    try:
        program = trace(net, torch.zeros(2, *shape))
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise UserError(
            f"torch.export cannot trace {name}.forward on {tuple(shape)} samples: "
            f"{first}; export --format safetensors instead"
        ) from None
    writes.atomic_write(output, lambda f: torch.export.save(program, f), fix=_FIX)


def read_export_metadata(path: Path) -> dict[str, Any]:
    """The metadata of a safetensors export (empty for other safetensors files)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    if meta.get("format") != EXPORT_FORMAT:
        return {}
    return {k: (json.loads(v) if k in ("model", "hparams", "spec") else v) for k, v in meta.items()}
