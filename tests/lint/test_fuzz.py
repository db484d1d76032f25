"""Random and malformed sources: the linter never crashes, and fixes never break code."""

from __future__ import annotations

import ast
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from torchstyle.lint import registry
from torchstyle.lint.runner import Linter

FIXTURES = sorted((Path(__file__).parent / "fixtures").glob("TS*.py"))
SOURCES = [p.read_text(encoding="utf-8") for p in FIXTURES if not p.name.endswith(".fixed.py")]
LINTER = Linter(registry.resolve_selection(["ALL"]))
SETTINGS = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

#: Statement pieces in the shapes the rules look at, to build plausible (and broken) code.
PIECES = [
    "import torch",
    "import numpy as np",
    "import torch.nn as nn",
    "from torch.autograd import Variable",
    "class Net(nn.Module):",
    "    def forward(self, x):",
    "        return np.exp(x.numpy())",
    "for epoch in range(10):",
    "    for x, y in loader:",
    "        loss = criterion(model(x), y)",
    "        loss.backward()",
    "        optimizer.step()",
    "        total += loss",
    "        (loss * w + 0.5 * aux).backward()",
    "        (loss / k - other).backward(retain_graph=True)",
    "        accelerator.backward(scaler.scale(loss).mean())",
    "        optimizer.zero_grad(); opt_g.step(); scheduler.step()",
    "        losses.append(loss); meter.update(loss, n)",
    "        if step % 10 == 0: writer.add_scalar('l', loss, step)",
    "        print(f'{loss}')",
    "    loader = DataLoader(ds)",
    "with torch.no_grad():",
    "    for x in val_loader: model(x)",
    "model.requires_grad = False",
    "torch.backends.cudnn.benchmark = True",
    "torch.manual_seed(0)",
    "np.random.shuffle(a)",
    "x = Variable(t).data",
    "y = m.forward(x)",
    "z = torch.load(p)",
    "if __name__ == '__main__':",
    "    main()",
    "def f(a, *b, c=lambda: (yield), **d): ...",
    "async def g():\n    async for i in it: await i\n    async with a as b: pass",
    "match x:\n    case [1, *r]: pass\n    case {'k': v}: pass",
    "try:\n    pass\nexcept* ValueError:\n    pass",
    "@torch.no_grad()\ndef h(): return [m(x) for x in val_loader]",
    "x = f'{a!r:>{w}} {b=}'",
    "global q; del q",
    "(",
    ")",
    ":",
    "    ",
    "# noqa: TS1",
    "'''",
]


@SETTINGS
@given(st.text(max_size=300))
def test_random_text(text: str) -> None:
    LINTER.lint(text, "random.py")


@SETTINGS
@given(st.lists(st.sampled_from(PIECES), max_size=25), st.sampled_from(["\n", "\r\n", "\r"]))
def test_random_statements(lines: list[str], newline: str) -> None:
    source = newline.join(lines) + newline
    findings = LINTER.lint(source, "pieces.py")
    assert "TS002" not in {f.code for f in findings}, findings
    fixed, remaining, _ = LINTER.fix(source, "pieces.py", unsafe=True)
    if not any(f.code == "TS001" for f in findings):
        ast.parse(fixed)  # a fix never breaks code that parsed
    assert "TS002" not in {f.code for f in remaining}


@SETTINGS
@given(
    st.sampled_from(SOURCES),
    st.lists(
        st.tuples(st.integers(0, 10_000), st.integers(0, 40), st.text(max_size=8)), max_size=6
    ),
)
def test_mutated_fixtures(source: str, edits: list[tuple[int, int, str]]) -> None:
    for position, length, insert in edits:
        position %= len(source) + 1
        source = source[:position] + insert + source[position + length :]
    findings = LINTER.lint(source, "mutated.py")
    assert "TS002" not in {f.code for f in findings}, findings
    fixed, _, _ = LINTER.fix(source, "mutated.py", unsafe=True)
    try:
        ast.parse(source)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return
    ast.parse(fixed)
