"""``torchstyle predict``: every kind of model predicts in its own terms.

A model says what kind of prediction it makes through its ``predict_kind`` class attribute;
each kind is one :class:`Predictor` in a registry, so a new kind is a new class here and no
code dispatches on model names:

* ``classify``: image files or folders in, one label and probability per image out (CSV);
* ``generate``: ``--num`` samples from ``--seed``, one PNG each and a grid;
* ``translate``: image files or folders in, translated images out, one PNG each;
* ``text``: a ``--prompt`` in, sampled text out (language models).

Every input and the output location are checked before anything is computed, so a mistake
costs nothing and overwrites nothing.
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from torchstyle import writes
from torchstyle.data.augment import ResizePolicy
from torchstyle.errors import UserError
from torchstyle.models import TorchstyleModel, preprocessing
from torchstyle.output import CommandOutput
from torchstyle.spec import DataSpec

_FIX = "or pass --output DIR on a writable disk"

# Images the sample grid of `generate` puts in one row.
GRID_ROW = 8


class Predictor:
    """One kind of prediction: which flags it takes and how it runs.

    Attributes:
        kind: The ``predict_kind`` of the models it serves.
        summary: One line for ``torchstyle predict --help``.
        flags: The ``predict`` flags (destinations) this kind uses; the others are refused
            when given, so a flag never silently does nothing.
    """

    kind: ClassVar[str] = ""
    summary: ClassVar[str] = ""
    flags: ClassVar[frozenset[str]] = frozenset()

    def run(
        self, model: TorchstyleModel, spec: DataSpec, args: argparse.Namespace
    ) -> CommandOutput:
        """Predicts with ``model`` as ``args`` say; returns what the CLI prints."""
        raise NotImplementedError


PREDICTORS: dict[str, Predictor] = {}


def register_predictor(cls: type[Predictor]) -> type[Predictor]:
    """Class decorator that makes a predictor serve models of its ``kind``."""
    PREDICTORS[cls.kind] = cls()
    return cls


# Flags of `predict` that only some kinds take, with their defaults (None: not given).
KIND_FLAGS: dict[str, Any] = {
    "inputs": [],
    "output": None,
    "num": None,
    "seed": None,
    "save": None,
    "prompt": None,
    "max_new_tokens": None,
    "temperature": None,
    "top_k": None,
    "skip_bad_images": False,
}
# The fix a bad input image's message names.
_INPUT_HINT = "fix or delete the file, or pass --skip-bad-images to predict the others"


def add_predict_arguments(parser: argparse.ArgumentParser) -> None:
    """Adds the flags of every kind; each kind checks that it was given only its own."""
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="image files or folders (searched recursively; hidden files skipped) to classify "
        "or translate",
    )
    parser.add_argument(
        "--output",
        help="classify: a CSV file; generate and translate: a folder (default: a new folder "
        "RUN/predictions/TIMESTAMP)",
    )
    parser.add_argument("--num", type=int, help="generate: how many samples (default: 16)")
    parser.add_argument("--seed", type=int, help="generate, text: seed of the draws (default: 0)")
    parser.add_argument(
        "--save",
        choices=("both", "grid", "files"),
        help="generate: a grid PNG, one PNG per sample, or both (default: both)",
    )
    parser.add_argument("--prompt", help="text: the text to continue, e.g. 'def '")
    parser.add_argument(
        "--max-new-tokens", type=int, help="text: how many bytes to sample (default: 200)"
    )
    parser.add_argument(
        "--temperature", type=float, help="text: sampling temperature; 0 is greedy (default: 0.8)"
    )
    parser.add_argument(
        "--top-k", type=int, help="text: sample among the k likeliest; 0 for all (default: 40)"
    )
    parser.add_argument(
        "--skip-bad-images",
        action="store_true",
        help="classify, translate: leave unreadable images out (listed on stderr) and predict "
        "the others",
    )
    kinds = "\n".join(f"  {k:<10} {p.summary}" for k, p in sorted(PREDICTORS.items()))
    parser.epilog = f"What a run predicts depends on its model:\n{kinds}"
    parser.formatter_class = argparse.RawDescriptionHelpFormatter


def predictor_for(model: TorchstyleModel, args: argparse.Namespace) -> Predictor:
    """The predictor of the model's kind, after refusing flags that kind does not take."""
    kind = type(model).predict_kind
    predictor = PREDICTORS.get(kind)
    if predictor is None:
        raise UserError(
            f"model {type(model).model_name or type(model).__name__!r} declares predict_kind "
            f"{kind!r}, which `predict` does not know; known kinds: {', '.join(sorted(PREDICTORS))}"
        )
    given = [
        name
        for name, default in KIND_FLAGS.items()
        if getattr(args, name, default) not in (None, [], False)
    ]
    foreign = [name for name in given if name not in predictor.flags]
    if foreign:
        shown = ", ".join("INPUT" if n == "inputs" else "--" + n.replace("_", "-") for n in foreign)
        raise UserError(
            f"this run's model {kind}s ({predictor.summary}); it takes no {shown}; "
            "see `torchstyle predict --help`"
        )
    return predictor


# ---------------------------------------------------------------------------------- inputs
def read_samples(
    inputs: list[str],
    spec: DataSpec,
    *,
    skip: bool = False,
    skipped: list[str] | None = None,
    resize: ResizePolicy | None = None,
) -> tuple[list[str], list[Tensor]]:
    """The samples ``inputs`` name, each shaped as the run's data: ``(names, tensors)``.

    With ``skip``, unreadable images are left out and their messages appended to ``skipped``.

    Images are read as the run's channels and resized to its height and width (square runs
    take the centred square, or the weights' ``resize`` policy, as their evaluation split
    did); feature runs read rows of
    ``.csv`` (a non-numeric first row is a header) or ``.npy`` files, named ``FILE:ROW``.

    Raises:
        UserError: An input is missing or unreadable (without ``skip``), or a row has the
            wrong length.
    """
    if spec.layout == "features":
        rows = [r for i in inputs for r in read_feature_rows(Path(i), spec.features)]
        return [name for name, _ in rows], [row for _, row in rows]
    from torchstyle.data.folder import load_image
    from torchstyle.data.images import read_image

    size = (spec.height, spec.width)

    def read_one(path: Path) -> Tensor:
        if spec.height == spec.width:
            return load_image(path, spec.channels, spec.height, _INPUT_HINT, resize)
        image = read_image(path, spec.channels, _INPUT_HINT).float().unsqueeze(0)
        resized = torch.nn.functional.interpolate(image, size=size, mode="bilinear")[0]
        return resized.div_(127.5).sub_(1.0)

    files, images, left_out = read_inputs(collect_images(inputs), read_one, skip=skip)
    if skipped is not None:
        skipped += left_out
    return [str(p) for p in files], images


def read_feature_rows(path: Path, features: int) -> list[tuple[str, Tensor]]:
    """The feature vectors of a ``.csv`` or ``.npy`` file, each named ``PATH:ROW``.

    Raises:
        UserError: The file is missing, of another kind, or a row has other than ``features``
            numbers.
    """
    if not path.is_file():
        raise UserError(f"no such file {path}; pass .csv or .npy files of feature rows")
    if path.suffix == ".npy":
        import numpy as np

        table = torch.as_tensor(np.load(path, allow_pickle=False), dtype=torch.float32)
        table = table.reshape(1, -1) if table.ndim == 1 else table
    elif path.suffix == ".csv":
        table = _csv_table(path, features)
    else:
        raise UserError(f"{path}: pass .csv or .npy files of feature rows for this run")
    if table.ndim != 2 or table.shape[1] != features:
        raise UserError(
            f"{path}: rows of {table.shape[-1]} numbers, but the run was trained on "
            f"{features} features; give rows of {features} numbers"
        )
    return [(f"{path}:{i}", row) for i, row in enumerate(table)]


def _csv_table(path: Path, features: int) -> Tensor:
    """The numbers of a CSV file, one row per sample; a first row that is not numbers is a header."""
    rows = [row for row in csv.reader(path.read_text().splitlines()) if row]

    def numeric(row: list[str]) -> bool:
        try:
            [float(v) for v in row]
        except ValueError:
            return False
        return True

    if rows and not numeric(rows[0]):
        rows = rows[1:]
    for i, row in enumerate(rows):
        if len(row) != features or not numeric(row):
            raise UserError(
                f"{path}: row {i} is not {features} numbers (got {len(row)} fields); give rows "
                f"of the {features} features the run was trained on"
            )
    return torch.tensor([[float(v) for v in row] for row in rows], dtype=torch.float32).reshape(
        -1, features
    )


def collect_images(inputs: list[str]) -> list[Path]:
    """The image files that ``inputs`` name, folders read recursively (hidden files skipped).

    Raises:
        UserError: There are no inputs, an input does not exist, or a folder holds no images.
    """
    from torchstyle.data.images import expand_image_paths

    if not inputs:
        raise UserError("no inputs: pass image files or folders after the run folder")
    return expand_image_paths(list(inputs))


def read_inputs(
    files: list[Path], read: Any, *, skip: bool
) -> tuple[list[Path], list[Any], list[str]]:
    """Reads every input with ``read``: the files read, what was read, and the messages of the
    unreadable ones (left out with ``skip``; without it the first one raises).

    Raises:
        UserError: An input is unreadable and ``skip`` is off, or every input is.
    """
    from torchstyle.data.images import BadImageError

    kept, read_ones, skipped = [], [], []
    for path in files:
        try:
            read_ones.append(read(path))
        except BadImageError as e:
            if not skip:
                raise
            skipped.append(str(e).split("; fix or delete", 1)[0])
            continue
        kept.append(path)
    if not kept:
        raise UserError(f"every input image is unreadable ({skipped[0]}); nothing to predict")
    return kept, read_ones, skipped


def skipped_report(skipped: list[str]) -> str:
    """The stderr lines that say which unreadable inputs ``--skip-bad-images`` left out."""
    if not skipped:
        return ""
    lines = [f"skipped {len(skipped)} unreadable image(s) (--skip-bad-images):"]
    return "\n".join([*lines, *(f"  {s}" for s in skipped)]) + "\n"


def output_folder(run: Path, output: str | None) -> Path:
    """The folder that image outputs go to: ``--output``, or a new one inside the run."""
    if output is None:
        return run / "predictions" / time.strftime("%Y%m%d-%H%M%S")
    folder = Path(output)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"--output {folder} is a file; pass a folder for the images")
    if not folder.parent.is_dir():
        raise UserError(
            f"--output {folder}: its parent folder {folder.parent} does not exist; create it first"
        )
    return folder


def refuse_overwrite(paths: Iterable[Path]) -> None:
    """Refuses to write over existing files (before anything is computed)."""
    existing = [p for p in paths if p.exists()]
    if existing:
        more = f" and {len(existing) - 1} more" if len(existing) > 1 else ""
        raise UserError(
            f"{existing[0]}{more} already exist(s); pass another --output folder, or move them"
        )


def save_images(images: Tensor, paths: list[Path]) -> None:
    """Saves each image ``(C, H, W)`` in ``[-1, 1]`` of ``images`` as a PNG."""
    from torchvision.utils import save_image

    for img, path in zip(images, paths, strict=True):
        _save_png(save_image, ((img.float().cpu() + 1) / 2).clamp(0, 1), path)


def _save_png(save_image: Any, pixels: Tensor, path: Path) -> None:
    writes.atomic_write(path, lambda f: save_image(pixels, f, format="png"), fix=_FIX)


def _batches(items: list[Any], size: int) -> Iterable[list[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---------------------------------------------------------------------------------- kinds
@register_predictor
class Classify(Predictor):
    """Labels and probabilities, one row per image; printed, and written as CSV with --output."""

    kind = "classify"
    summary = (
        "INPUT images or folders (feature runs: .csv/.npy rows) -> class and probability "
        "per input (--output FILE.csv)"
    )
    flags = frozenset({"inputs", "output", "skip_bad_images"})

    def run(
        self, model: TorchstyleModel, spec: DataSpec, args: argparse.Namespace
    ) -> CommandOutput:
        """Classifies every input (all read before any is classified)."""
        from torchstyle.engine.finetune import resize_policy
        from torchstyle.engine.rundir import atomic_write_text, check_output_file

        output = Path(args.output) if args.output else None
        if output is not None:  # checked first: the predictions must have somewhere to go
            check_output_file(output)
        skipped: list[str] = []
        files, images = read_samples(
            args.inputs,
            spec,
            skip=bool(getattr(args, "skip_bad_images", False)),
            skipped=skipped,
            resize=resize_policy(preprocessing.installed(model)),  # the run's, as evaluated
        )
        device = next(model.parameters()).device
        rows: list[tuple[str, str, float]] = []
        with torch.no_grad():
            for chunk_paths, chunk in zip(
                _batches(files, args.batch_size), _batches(images, args.batch_size), strict=True
            ):
                probs = model.predict(torch.stack(chunk).to(device))  # (B, *sample) -> (B, K)
                conf, label = probs.max(dim=1)
                for p, c, k in zip(chunk_paths, conf.tolist(), label.tolist(), strict=True):
                    rows.append((str(p), spec.class_names[k], c))
        if output is not None:
            text = io.StringIO(newline="")
            writer = csv.writer(text)
            writer.writerow(["input", "class", "probability"])
            writer.writerows((i, n, f"{p:.6f}") for i, n, p in rows)
            atomic_write_text(output, text.getvalue())  # never half a file
        return CommandOutput(
            stdout="".join(f"{image}\t{name}\t{prob:.4f}\n" for image, name, prob in rows),
            stderr=skipped_report(skipped),
        )


@register_predictor
class Generate(Predictor):
    """Samples of a generative model: one PNG each and a grid, reproducible by ``--seed``."""

    kind = "generate"
    summary = "--num N samples from --seed S -> PNG files and a grid in --output DIR"
    flags = frozenset({"output", "num", "seed", "save"})

    def run(
        self, model: TorchstyleModel, spec: DataSpec, args: argparse.Namespace
    ) -> CommandOutput:
        """Generates the samples and writes them."""
        from torchvision.utils import make_grid, save_image

        num = 16 if args.num is None else args.num
        if num < 1:
            raise UserError(f"--num must be a positive integer, got {num}")
        seed = 0 if args.seed is None else args.seed
        save = args.save or "both"
        folder = output_folder(Path(args.run), args.output)
        files = [folder / f"sample_{i:04d}.png" for i in range(num)] if save != "grid" else []
        grid_path = folder / "grid.png"
        refuse_overwrite([*files, *([grid_path] if save != "files" else [])])
        generator = torch.Generator().manual_seed(seed)
        chunks = [
            model.generate_images(len(c), generator=generator)
            for c in _batches(list(range(num)), args.batch_size)
        ]
        images = torch.cat(chunks).float().cpu()  # (N, C, H, W) in [-1, 1]
        writes.make_dirs(folder, fix=_FIX)
        if files:
            save_images(images, files)
        lines = [f"{num} samples (seed {seed}) in {folder}"]
        if save != "files":
            grid = make_grid(images, nrow=GRID_ROW, normalize=True, value_range=(-1, 1))
            writes.atomic_write(grid_path, lambda f: save_image(grid, f, format="png"), fix=_FIX)
            lines.append(f"grid: {grid_path}")
        return CommandOutput(stdout="\n".join(lines) + "\n")


@register_predictor
class Translate(Predictor):
    """Image-to-image models: each input image translated, saved under its own name."""

    kind = "translate"
    summary = "INPUT images or folders -> translated PNGs in --output DIR (A|B pairs: A is used)"
    flags = frozenset({"inputs", "output", "skip_bad_images"})

    def run(
        self, model: TorchstyleModel, spec: DataSpec, args: argparse.Namespace
    ) -> CommandOutput:
        """Translates every input; an A|B pair image (twice as wide as high) gives its A half."""
        files, read, skipped = read_inputs(
            collect_images(args.inputs),
            lambda p: _read_input(p, spec),
            skip=bool(getattr(args, "skip_bad_images", False)),
        )
        folder = output_folder(Path(args.run), args.output)
        targets = _target_names(files, folder)
        refuse_overwrite(targets)
        inputs, pairs = zip(*read, strict=True)
        device = next(model.parameters()).device
        outputs = []
        with torch.no_grad():
            for chunk in _batches(list(inputs), args.batch_size):
                outputs.append(model.translate(torch.stack(chunk).to(device)).cpu())
        writes.make_dirs(folder, fix=_FIX)
        save_images(torch.cat(outputs), targets)
        lines = [f"{src}\t{dst}" for src, dst in zip(files, targets, strict=True)]
        if any(pairs):
            lines.append(
                f"{sum(pairs)} input(s) were A|B pairs (twice as wide as high): translated their "
                "left half, A"
            )
        lines.append(f"{len(files)} images translated into {folder}")
        return CommandOutput(stdout="\n".join(lines) + "\n", stderr=skipped_report(skipped))


def _target_names(files: list[Path], folder: Path) -> list[Path]:
    """One output PNG per input, named after it; inputs of the same name get a number."""
    seen: dict[str, int] = {}
    targets = []
    for path in files:
        n = seen.get(path.stem, 0)
        seen[path.stem] = n + 1
        targets.append(folder / (f"{path.stem}.png" if n == 0 else f"{path.stem}_{n}.png"))
    return targets


def _read_input(path: Path, spec: DataSpec) -> tuple[Tensor, bool]:
    """An input image as ``(C, S, S)`` in ``[-1, 1]``, and whether it was an A|B pair."""
    from torchstyle.data.folder import read_image
    from torchstyle.data.paired import load_pair

    img = read_image(path, spec.channels, _INPUT_HINT)
    _, height, width = img.shape
    if width == 2 * height:
        a, _ = load_pair(path, spec.channels, spec.image_size)
        return a, True
    from torchstyle.data.folder import load_image

    return load_image(path, spec.channels, spec.image_size, _INPUT_HINT), False


@register_predictor
class Text(Predictor):
    """Language models: a prompt continued by sampling."""

    kind = "text"
    summary = "--prompt TEXT -> its continuation (--max-new-tokens, --temperature, --top-k, --seed)"
    flags = frozenset({"prompt", "max_new_tokens", "temperature", "top_k", "seed"})

    def run(
        self, model: TorchstyleModel, spec: DataSpec, args: argparse.Namespace
    ) -> CommandOutput:
        """Samples a continuation of ``--prompt``, reproducibly for a ``--seed``."""
        if args.prompt is None:
            raise UserError(
                'pass --prompt TEXT, the text to continue (for example --prompt "def ")'
            )
        max_new = 200 if args.max_new_tokens is None else args.max_new_tokens
        temperature = 0.8 if args.temperature is None else args.temperature
        top_k = 40 if args.top_k is None else args.top_k
        if max_new < 1:
            raise UserError(f"--max-new-tokens must be a positive integer, got {max_new}")
        if temperature < 0:
            raise UserError(f"--temperature must be >= 0 (0 is greedy), got {temperature}")
        if top_k < 0:
            raise UserError(f"--top-k must be >= 0 (0 samples from every byte), got {top_k}")
        text = model.complete(
            args.prompt,
            max_new_tokens=max_new,
            temperature=temperature,
            top_k=top_k or None,
            seed=0 if args.seed is None else args.seed,
        )
        return CommandOutput(stdout=text + "\n")
