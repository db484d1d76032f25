"""Every safe fix in every fixture keeps each call's meaning, checked against real torch.

Each safe fix is applied alone; the result must parse, must not write a call next to the
same call (``.detach().detach()``), and every call it rewrites into another API must bind
to the new API's signature (``inspect.signature(...).bind``) with the same argument values
that the old call bound to the old API's parameters. The only argument a fix may add is
the device a ``torch.amp`` replacement takes first.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import warnings
from pathlib import Path
from typing import Any

import pytest

from torchstyle.lint import all_rules
from torchstyle.lint import deprecations as dep
from torchstyle.lint.base import Finding
from torchstyle.lint.context import FileContext
from torchstyle.lint.fixes import apply_fixes
from torchstyle.lint.runner import Linter

pytest.importorskip("torch")
pytest.importorskip("torchvision")

FIXTURES = Path(__file__).parent / "fixtures"
SOURCES = sorted(p for p in FIXTURES.glob("*.py") if not p.name.endswith(".fixed.py"))
#: torchvision's legacy interface (``handle_legacy_interface``): the old argument -> the new.
LEGACY_NAMES = {"pretrained": "weights", "pretrained_backbone": "weights_backbone"}
#: ...and the old value that means the same as the new one (``pretrained=False``).
LEGACY_VALUES = {"False": "None"}
_DOUBLED = re.compile(r"(\.\w+\(\))\1")


def _resolve(qualname: str) -> Any:
    """The object ``qualname`` names, as attribute access would find it from the top
    package (``torch.nn.utils.weight_norm`` is the function, not its submodule)."""
    parts = qualname.split(".")
    try:
        obj: Any = importlib.import_module(parts[0])
    except ImportError:
        return None
    for i, part in enumerate(parts[1:], 2):
        if hasattr(obj, part):
            obj = getattr(obj, part)
            continue
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ImportError:
            return None
    return obj


def _signature(obj: Any) -> inspect.Signature:
    """``obj``'s signature; for builtins, the one on the first line of its docstring.

    A class wrapped by ``@deprecated`` shows ``(*args, **kwargs)`` before Python 3.13: its
    ``__init__`` has the real parameters.
    """
    try:
        sig = inspect.signature(obj)
        variadic = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
        if isinstance(obj, type) and all(p.kind in variadic for p in sig.parameters.values()):
            init = inspect.signature(obj.__init__)
            return init.replace(parameters=list(init.parameters.values())[1:])
        return sig
    except (TypeError, ValueError):
        first = (obj.__doc__ or "").strip().splitlines()[0]
        params = first[first.index("(") + 1 : first.rindex(")")]
        namespace: dict[str, Any] = {}
        exec(f"def _f({params}): pass", namespace)
        return inspect.signature(namespace["_f"])


def _is_torchvision_builder(qualname: str) -> bool:
    return qualname.startswith("torchvision.models.") and (
        qualname.rsplit(".", 1)[1] in dep.TORCHVISION_BUILDERS
    )


def _bind(qualname: str, call: ast.Call, source: str) -> dict[str, str]:
    """The old or new call's arguments as parameter -> source text of the value."""
    obj = _resolve(qualname)
    assert obj is not None, f"{qualname} does not exist in the installed torch"
    sig = _signature(obj)
    args = [ast.get_source_segment(source, a) or "" for a in call.args]
    kwargs = {kw.arg: ast.get_source_segment(source, kw.value) or "" for kw in call.keywords}
    assert None not in kwargs, "a call with **kwargs cannot be checked"
    if _is_torchvision_builder(qualname) and args:
        # torchvision's kwonly_to_pos_or_kw: positional arguments fill the keyword-only ones
        keyword_only = [p for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY]
        kwargs.update({p.name: a for p, a in zip(keyword_only, args, strict=False)})
        args = []
    bound = sig.bind(*args, **kwargs).arguments
    flat: dict[str, str] = {}
    for name, value in bound.items():
        kind = sig.parameters[name].kind
        if kind == inspect.Parameter.VAR_KEYWORD:
            flat.update(value)
        elif kind == inspect.Parameter.VAR_POSITIONAL:
            flat.update({f"{name}[{i}]": v for i, v in enumerate(value)})
        else:
            flat[name] = value
    if not _is_torchvision_builder(qualname):
        return flat
    legacy: dict[str, str] = {}
    for name, value in flat.items():
        name = LEGACY_NAMES.get(name, name)
        legacy[name] = LEGACY_VALUES.get(value, value) if name.startswith("weights") else value
    return legacy


def _calls(source: str) -> tuple[FileContext, dict[int, ast.Call]]:
    """The file's calls by start offset, and a context that resolves their callees."""
    tree = ast.parse(source)
    ctx = FileContext("<fixture>", source, tree)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            ctx.add_import(node)
    calls = {ctx.span(n)[0]: n for n in ast.walk(tree) if isinstance(n, ast.Call)}
    return ctx, calls


def _rewritten_call(ctx: FileContext, finding: Finding) -> ast.Call | None:
    """The innermost call that contains every edit of ``finding``'s fix."""
    assert finding.fix is not None
    lo = min(e.start for e in finding.fix.edits)
    hi = max(e.end for e in finding.fix.edits)
    best: ast.Call | None = None
    for node in ast.walk(ctx.tree):
        if isinstance(node, ast.Call):
            start, end = ctx.span(node)
            if start <= lo and hi <= end and (best is None or ctx.span(best)[0] <= start):
                best = node
    return best


def _check_binding(source: str, fixed: str, finding: Finding) -> str | None:
    """Checks one fix; returns the old callee when it was an API call that was checked."""
    old_ctx, _ = _calls(source)
    new_ctx, new_calls = _calls(fixed)
    old_call = _rewritten_call(old_ctx, finding)
    if old_call is None:
        return None
    old_name = old_ctx.qualname(old_call.func) or ""
    if _resolve(old_name) is None or not old_name.startswith(("torch", "functorch")):
        return None  # the project's own objects (model.forward(x)): parsing is the check
    new_call = new_calls.get(old_ctx.span(old_call)[0])
    assert new_call is not None, "the rewritten call starts where the old one did"
    new_name = new_ctx.qualname(new_call.func) or ""
    old_args = _bind(old_name, old_call, source)
    new_args = _bind(new_name, new_call, fixed)
    entry = dep.BY_NAME.get(old_name)
    added = {k: v for k, v in new_args.items() if k not in old_args}
    if entry is not None and entry.fix == "device-first":
        first = next(iter(_signature(_resolve(new_name)).parameters))
        assert added == {first: entry.argument}, f"{old_name}: only the device is added"
    else:
        assert not added, f"{old_name} -> {new_name}: the fix added {added}"
    for name, value in old_args.items():
        assert new_args.get(name) == value, (
            f"{old_name}(...) -> {new_name}(...): `{name}` was {value!r}, "
            f"now {new_args.get(name)!r} ({new_args})"
        )
    return old_name


def _safe_findings(path: Path, source: str) -> list[Finding]:
    linter = Linter(list(all_rules()))
    return [
        f
        for f in linter.lint(source, path.name)
        if f.fix is not None and f.fix.applicability == "safe"
    ]


@pytest.mark.parametrize("path", SOURCES, ids=[p.stem for p in SOURCES])
def test_every_safe_fix_binds_to_the_new_api(path: Path) -> None:
    source = path.read_text(encoding="utf-8")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for finding in _safe_findings(path, source):
            fixed, count = apply_fixes(source, [finding])
            assert count == 1
            ast.parse(fixed)
            assert len(_DOUBLED.findall(fixed)) <= len(_DOUBLED.findall(source)), finding
            _check_binding(source, fixed, finding)


def test_the_binding_check_covers_the_api_moves() -> None:
    """The check above really ran on API calls (it does not pass by finding none)."""
    checked: set[str] = set()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in SOURCES:
            source = path.read_text(encoding="utf-8")
            for finding in _safe_findings(path, source):
                fixed, _ = apply_fixes(source, [finding])
                name = _check_binding(source, fixed, finding)
                if name:
                    checked.add(name)
    expected = {
        "torch.cuda.amp.GradScaler",
        "torch.cpu.amp.autocast",
        "torch.nn.functional.upsample",
        "torch.ger",
        "torch.nn.utils.clip_grad_norm",
        "torch.nn.NLLLoss2d",
        "functorch.vmap",
        "torchvision.models.resnet18",
    }
    assert expected <= checked, expected - checked


def test_the_old_positional_autocast_flag_is_caught() -> None:
    """The fix that put ``enabled`` into ``dtype`` fails the check."""
    source = "import torch\nflag = True\nwith torch.cuda.amp.autocast(flag):\n    pass\n"
    finding = _safe_findings(Path("a.py"), source)[0]
    assert finding.fix is not None
    broken = source.replace("torch.cuda.amp.autocast(flag)", 'torch.amp.autocast("cuda", flag)')
    with pytest.raises(AssertionError, match="only the device is added"):
        _check_binding(source, broken, finding)
    fixed, _ = apply_fixes(source, [finding])
    assert 'torch.amp.autocast("cuda", enabled=flag)' in fixed
    assert _check_binding(source, fixed, finding) == "torch.cuda.amp.autocast"
