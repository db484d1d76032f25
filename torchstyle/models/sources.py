"""Where a model comes from: ``--model`` specs resolved to a builder and adapted to the data.

``--model`` takes one of:

* a registered name (``classifier``; ``torchstyle models`` lists them);
* ``path/to/file.py:Name`` or ``package.module:Name``: a class or a factory function;
* ``torchvision:NAME``: any torchvision classification builder (``torchvision:resnet18``);
* ``timm:NAME``: any timm model (the optional ``torchstyle[timm]`` extra).

Building never downloads weights. The input channels and number of classes come from the data:
passed to the builder when its signature takes them, else the first convolution and the last
linear layer are replaced; each adaptation is reported. A user's file is copied into the run
folder with the files it imported from the user's folder (a model of several files, or one in
a package), so ``test``, ``predict`` and ``--resume`` rebuild the model from the run folder
alone.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import importlib.util
import inspect
import logging
import os
import re
import shutil
import sys
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from torchstyle.errors import UserError
from torchstyle.models.arguments import matches, type_name
from torchstyle.spec import DataSpec

log = logging.getLogger(__name__)

KINDS = ("registered", "file", "module", "torchvision", "timm")
# Constructor argument names that mean "input channels", "classes" and "image side".
CHANNEL_ARGS = ("in_channels", "in_chans", "num_channels", "input_channels")
CLASS_ARGS = ("num_classes", "n_classes", "num_outputs")
SIZE_ARGS = ("image_size", "img_size", "input_size")
# ... and "numbers in a feature vector" (tabular data).
FEATURE_ARGS = ("in_features", "num_features", "input_dim")
# Where a run keeps the copy of a user's model file.
COPY_DIR = "model"
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class ModelSource:
    """A parsed ``--model`` value.

    Attributes:
        kind: One of :data:`KINDS`.
        target: Registered name, file path, module name, or torchvision/timm model name.
        attr: The class or factory inside a file or module; None otherwise.
    """

    kind: str
    target: str
    attr: str | None = None

    @property
    def text(self) -> str:
        """The ``--model`` value this source was parsed from."""
        if self.kind in ("torchvision", "timm"):
            return f"{self.kind}:{self.target}"
        return f"{self.target}:{self.attr}" if self.attr else self.target

    @property
    def short_name(self) -> str:
        """A name safe in a folder name: ``classifier``, ``Net``, ``resnet18``."""
        name = self.attr or self.target
        return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "model"


def parse_model_spec(text: str) -> ModelSource:
    """Parses a ``--model`` value.

    Raises:
        UserError: The value has none of the accepted forms; the message shows them.
    """
    text = text.strip()
    forms = (
        "a registered name (see `torchstyle models`), path/to/file.py:Name, "
        "package.module:Name, torchvision:NAME or timm:NAME"
    )
    for lib in ("torchvision", "timm"):
        if text.startswith(f"{lib}:"):
            name = text[len(lib) + 1 :]
            if not _IDENT.match(name):
                raise UserError(f"--model {text!r}: expected {lib}:NAME, e.g. {lib}:resnet18")
            return ModelSource(lib, name)
    where, sep, attr = text.rpartition(":")
    if sep:
        if not _IDENT.match(attr):
            raise UserError(f"--model {text!r}: {attr!r} is not a Python name; use {forms}")
        if where.endswith(".py") or "/" in where or "\\" in where:
            return ModelSource("file", where, attr)
        if all(_IDENT.match(part) for part in where.split(".")):
            return ModelSource("module", where, attr)
        raise UserError(
            f"--model {text!r}: {where!r} is neither a .py file nor a module; use {forms}"
        )
    if text.endswith(".py"):
        raise UserError(
            f"--model {text}: name the class or factory in the file, e.g. --model {text}:MyModel"
        )
    if not text:
        raise UserError(f"--model is empty; use {forms}")
    return ModelSource("registered", text)


# ---------------------------------------------------------------------------- resolving
def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def package_root(path: Path) -> tuple[Path, str]:
    """The folder a file is imported from and its module name there.

    A file in a package (folders with ``__init__.py``) is imported as ``pkg.sub.net`` from
    the folder above the top package, so its relative imports work; any other file as a
    script is (``python net.py``): its own folder, its stem.
    """
    path = path.resolve()
    parts = [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file() and _IDENT.match(folder.name):
        parts.insert(0, folder.name)
        folder = folder.parent
    return folder, ".".join(parts)


def load_file_module(path: Path) -> types.ModuleType:
    """Imports a Python file the way Python imports a script or a package's module.

    Its folder (for a file inside a package: the folder above the package) goes first on
    ``sys.path``, so the file can import its neighbours (``from blocks import Block``) and,
    in a package, use relative imports.

    Raises:
        UserError: The file is missing or fails to import; the message names the error.
    """
    if not path.is_file():
        raise UserError(f"--model: no such file {path}; check the path")
    root, dotted = package_root(path)
    if str(root) in sys.path:  # first, so that a run's copy wins over the originals
        sys.path.remove(str(root))
    sys.path.insert(0, str(root))
    if "." in dotted:  # inside a package: its own name, so relative imports resolve
        return _import_module(dotted, path)
    stem = re.sub(r"\W", "_", path.stem)
    name = f"torchstyle_user_{stem}_{_sha256(path)[:12]}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UserError(f"--model: cannot import {path}; is it a Python file?")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look classes up here
    try:
        spec.loader.exec_module(module)
    except (ImportError, SyntaxError, NameError, AttributeError) as e:
        del sys.modules[name]
        raise UserError(f"--model: importing {path} failed: {type(e).__name__}: {e}") from None
    return module


def _import_module(dotted: str, path: Path) -> types.ModuleType:
    loaded = sys.modules.get(dotted)
    file = Path(getattr(loaded, "__file__", None) or "/")
    if loaded is not None and file.resolve() != path.resolve():
        # The same package name imported from another folder (the original, then the run's
        # copy): forget it and its submodules so this file is the one imported.
        top = dotted.split(".")[0]
        for key in [k for k in sys.modules if k == top or k.startswith(top + ".")]:
            del sys.modules[key]
    try:
        return importlib.import_module(dotted)
    except (ImportError, SyntaxError, NameError, AttributeError) as e:
        raise UserError(f"--model: importing {path} failed: {type(e).__name__}: {e}") from None


def _attr_of(module: types.ModuleType, attr: str, where: str) -> Callable[..., Any]:
    obj = getattr(module, attr, None)
    if obj is None or not callable(obj):
        found = sorted(
            n
            for n, v in vars(module).items()
            if not n.startswith("_")
            and ((isinstance(v, type) and issubclass(v, nn.Module)) or inspect.isfunction(v))
            and getattr(v, "__module__", None) == module.__name__
        )
        raise UserError(
            f"--model: {where} has no class or function {attr!r}; "
            f"it defines {', '.join(found) or 'no nn.Module class or function'}"
        )
    builder: Callable[..., Any] = obj
    return builder


def optional_import(lib: str) -> types.ModuleType:
    """Imports an optional library.

    Raises:
        UserError: It is not installed; the message names the extra that installs it.
    """
    try:
        return importlib.import_module(lib)
    except ModuleNotFoundError as e:
        if e.name != lib:
            raise
        raise UserError(
            f"--model {lib}:...: {lib} is not installed; pip install 'torchstyle[{lib}]'"
        ) from None


def _torchvision_builder(name: str) -> Callable[..., nn.Module]:
    import torchvision.models as tvm

    names = tvm.list_models(module=tvm)  # classification builders only
    if name not in names:
        close = difflib.get_close_matches(name.lower(), names, n=8, cutoff=0.6)
        hint = f"; close: {', '.join(close)}" if close else "; see torchvision.models.list_models()"
        raise UserError(f"--model torchvision:{name}: no such classification model{hint}")
    builder: Callable[..., nn.Module] = tvm.get_model_builder(name)
    return builder


def _timm_builder(name: str) -> Callable[..., nn.Module]:
    timm = optional_import("timm")
    if not timm.is_model(name):
        close = difflib.get_close_matches(name, timm.list_models(), n=8, cutoff=0.6)
        hint = f"; close: {', '.join(close)}" if close else "; see timm.list_models()"
        raise UserError(f"--model timm:{name}: no such timm model{hint}")

    def build(**kwargs: Any) -> nn.Module:
        # pretrained=False: building never downloads; use --weights FILE to initialise.
        module: nn.Module = timm.create_model(name, pretrained=False, **kwargs)
        return module

    return build


def resolve(source: ModelSource, file: Path | None = None) -> Callable[..., nn.Module]:
    """The class or factory a source names.

    Args:
        source: The parsed ``--model``.
        file: For a file source, the file to load instead of ``source.target`` (a run's copy).

    Raises:
        UserError: The source does not exist or does not import.
    """
    if source.kind == "registered":
        from torchstyle.models import get_model_class

        return get_model_class(source.target)
    if source.kind == "torchvision":
        return _torchvision_builder(source.target)
    if source.kind == "timm":
        return _timm_builder(source.target)
    assert source.attr is not None  # parse_model_spec sets it for files and modules
    if source.kind == "file":
        path = file or Path(source.target)
        return _attr_of(load_file_module(path), source.attr, str(path))
    if "" not in sys.path and os.getcwd() not in sys.path:
        # As `python -m` does: a package in the working directory imports (the `torchstyle`
        # console script, unlike `python -m torchstyle`, does not put it on sys.path).
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(source.target)
    except ModuleNotFoundError as e:
        raise UserError(
            f"--model {source.text}: cannot import {e.name!r}; install it or put its folder on PYTHONPATH"
        ) from None
    return _attr_of(module, source.attr, f"module {source.target}")


# ---------------------------------------------------------------------------- arguments
@dataclass
class Signature:
    """The arguments a builder accepts, with their types where they can be read."""

    names: list[str]
    types: dict[str, Any]
    var_keyword: bool

    @classmethod
    def of(cls, builder: Callable[..., Any]) -> Signature:
        """Reads ``builder``'s signature (a class's ``__init__``)."""
        try:
            sig = inspect.signature(builder)
        except (TypeError, ValueError):
            return cls([], {}, True)
        func = builder.__init__ if isinstance(builder, type) else builder  # type: ignore[misc]
        try:
            hints = typing.get_type_hints(func)
        except (NameError, TypeError, AttributeError):
            hints = {}  # annotations naming things we cannot import: check names only
        params = [
            p
            for p in sig.parameters.values()
            if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name != "self"
        ]
        var_kw = any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values())
        return cls(
            [p.name for p in params], {p.name: hints.get(p.name, Any) for p in params}, var_kw
        )

    def accepts(self, name: str) -> bool:
        """Whether ``name`` is a named parameter (``**kwargs`` does not count)."""
        return name in self.names


def check_args(builder: Callable[..., Any], args: dict[str, Any], what: str) -> Signature:
    """Checks ``--model-arg`` values against the builder's signature.

    Raises:
        UserError: An unknown name or a value of the wrong type; the message lists the accepted
            arguments with their types.
    """
    sig = Signature.of(builder)
    listing = ", ".join(f"{n} ({type_name(sig.types.get(n, Any))})" for n in sig.names)
    for name, value in args.items():
        if not sig.accepts(name) and not sig.var_keyword:
            raise UserError(
                f"{what} got an unexpected keyword argument {name!r} (--model-arg {name}=...); "
                f"it accepts: {listing or '(none)'}"
            )
        hint = sig.types.get(name, Any)
        if not matches(value, hint):
            raise UserError(
                f"{what}: --model-arg {name}={value!r} must be {type_name(hint)}; "
                f"it accepts: {listing}"
            )
    return sig


# ---------------------------------------------------------------------------- adapting
@dataclass
class Built:
    """A model built for a dataset.

    Attributes:
        module: The network as the builder made it (adapted to the data).
        args: The arguments it was built with (data-derived ones included).
        notes: One line per adaptation, e.g. ``first conv: 3 -> 1 input channels``.
    """

    module: nn.Module
    args: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _data_args(sig: Signature, spec: DataSpec, given: dict[str, Any], lib: str) -> dict[str, Any]:
    """The data-derived arguments the builder takes and the user did not give."""
    out: dict[str, Any] = {}
    if lib == "timm":  # timm.create_model takes these for every model
        wanted = {"in_chans": spec.channels, "num_classes": spec.num_classes}
        return {k: v for k, v in wanted.items() if k not in given}
    if lib == "torchvision":  # torchvision builders pass num_classes on to every model
        return {} if "num_classes" in given else {"num_classes": spec.num_classes}
    for names, value in (
        (FEATURE_ARGS, spec.features),
        (CHANNEL_ARGS, spec.channels),
        (CLASS_ARGS, spec.num_classes),
        (SIZE_ARGS, spec.image_size),
    ):
        if value and not any(n in given for n in names):
            name = next((n for n in names if sig.accepts(n)), None)
            if name is not None:
                out[name] = value
    return out


def _replace(root: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, child, new)


def adapt_input_channels(module: nn.Module, channels: int) -> str | None:
    """Replaces the first convolution when it takes other than ``channels`` inputs.

    Returns:
        A note saying what was replaced, or None when nothing needed to be.
    """
    first = next(
        ((n, m) for n, m in module.named_modules() if isinstance(m, nn.Conv2d | nn.Conv1d)), None
    )
    if first is None or first[1].in_channels == channels:
        return None
    name, conv = first
    if conv.groups != 1:
        return None
    cls = type(conv)
    new = cls(
        channels,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]  # tuples fit every Conv
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        bias=conv.bias is not None,
        padding_mode=conv.padding_mode,
    )
    _replace(module, name, new)
    return f"first convolution {name}: {conv.in_channels} -> {channels} input channels"


def find_head(module: nn.Module) -> tuple[str, nn.Linear] | None:
    """The classification head: the last ``nn.Linear`` in registration order."""
    linears = [(n, m) for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    return linears[-1] if linears else None


def adapt_head(module: nn.Module, num_classes: int) -> str | None:
    """Replaces the last linear layer when it has other than ``num_classes`` outputs.

    Returns:
        A note saying what was replaced, or None when nothing needed to be.
    """
    head = find_head(module)
    if head is None or not num_classes or head[1].out_features == num_classes:
        return None
    name, linear = head
    new = nn.Linear(linear.in_features, num_classes, bias=linear.bias is not None)
    _replace(module, name, new)
    return f"classification head {name}: {linear.out_features} -> {num_classes} classes"


def check_output(module: nn.Module, spec: DataSpec, what: str) -> None:
    """One forward pass on a dummy batch: the output must be ``(B, num_classes)`` logits.

    Raises:
        UserError: The output has another shape; the message says which and the fix.
    """
    if not spec.num_classes:
        return
    x = torch.zeros(2, *spec.sample_shape)
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(x)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0][:200]
        raise UserError(
            f"{what} fails on samples of shape {spec.sample_shape} ({spec.describe()}): {first}; "
            "pass --image-size for a size it takes, or --model-arg to fit it to the data"
        ) from None
    finally:
        module.train(was_training)
    shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
    if shape != (2, spec.num_classes):
        raise UserError(
            f"{what} returns {shape} for a batch of 2 samples; a classifier must return logits "
            f"(2, {spec.num_classes}) for {spec.num_classes} classes; give it a num_classes argument"
        )


def build(
    source: ModelSource, spec: DataSpec, args: dict[str, Any], file: Path | None = None
) -> Built:
    """Builds the network a source names, adapted to the data.

    Args:
        source: The parsed ``--model``.
        spec: The data's channels, image size and classes.
        args: ``--model-arg`` values (checked against the builder's signature).
        file: For a file source, the file to load (a run's copy).

    Returns:
        The network and what was adapted. Registered models come back as they are built.

    Raises:
        UserError: Unknown source, bad arguments, or an output that does not fit the data.
    """
    builder = resolve(source, file)
    what = f"model {source.text!r}"
    if source.kind == "registered":  # the registry checks its own models' arguments
        from torchstyle.models import create_model

        model = create_model(source.target, spec, **args)
        return Built(model, {**model.hparams()}, [])
    sig = check_args(builder, args, what)
    lib = source.kind if source.kind in ("torchvision", "timm") else ""
    data_args = _data_args(sig, spec, args, lib)
    full = {**data_args, **args}
    module = builder(**full)
    if not isinstance(module, nn.Module):
        raise UserError(f"{what} returned {type(module).__name__}, not a torch.nn.Module")
    notes = [f"{k}={v} (from the data)" for k, v in data_args.items()]
    from torchstyle.models.base import TorchstyleModel

    if isinstance(module, TorchstyleModel) or hasattr(module, "training_step"):
        return Built(module, full, notes)  # the model trains itself: no adaptation
    for note in (
        adapt_input_channels(module, spec.channels) if spec.channels else None,
        adapt_head(module, spec.num_classes),
    ):
        if note:
            notes.append(note)
    check_output(module, spec, what)
    return Built(module, full, notes)


# ---------------------------------------------------------------------------- run folder
def record(source: ModelSource, args: dict[str, Any] | None, adapter: str) -> dict[str, Any]:
    """What a run stores to rebuild its model: the source, the arguments and the adapter.

    A plain dict of strings, numbers and lists (JSON- and ``weights_only``-safe).
    """
    rec: dict[str, Any] = {
        "spec": source.text,
        "kind": source.kind,
        "target": source.target,
        "attr": source.attr,
        "args": args,
        "adapter": adapter,
    }
    origin = _origin_file(source)
    if origin is not None:
        rec["origin"] = str(origin.resolve())
        rec["sha256"] = _sha256(origin)
        root, _ = package_root(origin)
        rec["root"] = str(root)
        rec["files"] = user_files(root, origin)
    return rec


def user_files(root: Path, origin: Path) -> list[str]:
    """The user's files a model imported from under ``root``, relative to it, ``origin`` first.

    Every imported module whose file lies under ``root`` (not an installed package, not
    torchstyle), and the ``__init__.py`` of the packages they are in: what the run folder
    must keep to import the model again once the originals are gone.
    """
    root = root.resolve()
    found = {origin.resolve()}
    for module in list(sys.modules.values()):
        file = getattr(module, "__file__", None)
        if not file or not file.endswith(".py"):
            continue
        path = Path(file).resolve()
        if path.is_relative_to(root) and not _installed(path) and path.is_file():
            found.add(path)
    for path in list(found):
        folder = path.parent
        while folder != root and folder.is_relative_to(root):
            init = folder / "__init__.py"
            if init.is_file():
                found.add(init)
            folder = folder.parent
    rel = sorted(str(p.relative_to(root)) for p in found if p != origin.resolve())
    return [str(origin.resolve().relative_to(root)), *rel]


def _origin_file(source: ModelSource) -> Path | None:
    """The user's Python file behind a source, if it is one we can copy."""
    if source.kind == "file":
        return Path(source.target)
    if source.kind == "module":
        module = sys.modules.get(source.target)
        path = getattr(module, "__file__", None)
        if path and Path(path).name != "__init__.py" and not _installed(Path(path)):
            return Path(path)
    return None


def _installed(path: Path) -> bool:
    """Files of installed packages (and torchstyle's own) are not copied."""
    parts = set(path.resolve().parts)
    return bool(parts & {"site-packages", "dist-packages"}) or "torchstyle" in {
        p.name for p in path.resolve().parents
    }


def save_copy(rec: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """Copies the user's model files into ``run_dir/model/``; returns the record with ``copy``.

    The files the model imported from the user's folder (``rec["files"]``) keep their paths
    relative to that folder, so the copy imports as the originals did; ``copy`` is the named
    file's copy, what later rebuilds load. Existing copies with other content (a resumed run
    whose files changed) are kept: they are what the weights fit.
    """
    origin = rec.get("origin")
    if not origin:
        return rec
    root = Path(rec.get("root") or Path(origin).parent)
    files = rec.get("files") or [Path(origin).name]
    dest_dir = run_dir / COPY_DIR
    for rel in files:
        src, dest = root / rel, dest_dir / rel
        if dest.exists() or not src.is_file():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest)
    main = dest_dir / files[0]
    return {**rec, "copy": f"{COPY_DIR}/{files[0]}", "sha256": _sha256(main)}


def source_from_record(rec: dict[str, Any]) -> ModelSource:
    """The :class:`ModelSource` a record was made from."""
    kind = rec.get("kind")
    if kind not in KINDS:
        raise UserError(
            f"the run's model record has an unknown kind {kind!r}; was it saved by torchstyle?"
        )
    return ModelSource(kind, rec["target"], rec.get("attr"))


def file_to_load(rec: dict[str, Any], run_dir: Path) -> Path | None:
    """The file a rebuild loads: the run's copy; a warning when the original moved on.

    Returns:
        The copy's path; the original's for a record without a copy; None for other sources.

    Raises:
        UserError: Neither the copy nor the original exists.
    """
    copy = rec.get("copy")
    origin = Path(rec["origin"]) if rec.get("origin") else None
    if copy is None:
        if rec.get("kind") == "file" and origin is not None and not origin.is_file():
            raise UserError(f"model file {origin} is gone and the run holds no copy of it")
        return origin if rec.get("kind") == "file" else None
    path = run_dir / str(copy)
    if not path.is_file():
        if origin is not None and origin.is_file():
            log.warning("warning: the run's model copy %s is missing; using %s", path, origin)
            return origin
        raise UserError(f"the run's model copy {path} is missing and {origin} is gone too")
    if origin is None or not origin.is_file():
        log.warning(
            "warning: model file %s no longer exists; using the run's copy %s", origin, path
        )
    elif _sha256(origin) != rec.get("sha256"):
        log.warning(
            "warning: model file %s changed since training; using the run's copy %s", origin, path
        )
    else:
        log.info("model file: the run's copy %s (same as %s)", path, origin)
    return path


def _find_spec(name: str) -> Any:
    try:
        return importlib.util.find_spec(name)
    except (ModuleNotFoundError, ValueError):
        return None


def rebuild(rec: dict[str, Any], spec: DataSpec, run_dir: Path) -> Built:
    """Builds a run's model again from its record, loading a user's file from the run's copy.

    Raises:
        UserError: The record's source cannot be found any more.
    """
    source = source_from_record(rec)
    args = dict(rec.get("args") or {})
    if source.kind == "module" and rec.get("copy"):
        live = sys.modules.get(source.target) or _find_spec(source.target)
        origin = Path(rec["origin"]) if rec.get("origin") else None
        same = origin is not None and origin.is_file() and _sha256(origin) == rec.get("sha256")
        if live is not None and same:
            return build(source, spec, args)
        copy = file_to_load(rec, run_dir)
        assert source.attr is not None
        return build(ModelSource("file", str(copy), source.attr), spec, args)
    return build(source, spec, args, file_to_load(rec, run_dir))
