"""TS402: ``cudnn.benchmark = True`` together with deterministic settings."""

from __future__ import annotations

import ast

from torchstyle.lint import facts
from torchstyle.lint.base import Rule, after, on, on_call
from torchstyle.lint.context import FileContext, Scope
from torchstyle.lint.registry import register

_Branches = tuple[tuple[int, bool], ...]


@register
class BenchmarkWithDeterminism(Rule):
    """``cudnn.benchmark = True`` in the same code path as deterministic settings.

    What:
        ``torch.backends.cudnn.benchmark = True`` and ``cudnn.deterministic = True`` (or
        ``torch.use_deterministic_algorithms(True)``) in the same function, not in opposite
        branches of an ``if``, with no ``cudnn.benchmark = False`` anywhere in the file.

    Why:
        Benchmark mode times several convolution algorithms on the first batches and keeps
        the fastest, which can differ from run to run: results are not reproducible, which
        is what the deterministic settings were meant to ensure. The guide's own example sets
        ``benchmark = True`` next to its seeds; pick one goal per run.

    Example:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = True

    Use instead:
        if args.deterministic:
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False
        else:
            torch.backends.cudnn.benchmark = True
    """

    code = "TS402"
    name = "benchmark-with-determinism"
    message = (
        "`cudnn.benchmark = True` undoes the deterministic settings on line {line}; set it to False"
    )
    triggers = ("benchmark",)

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the collected settings."""
        super().begin_file(ctx)
        self.ifs: list[ast.If] = []
        self.benchmarks: list[tuple[ast.AST, Scope | None, _Branches]] = []
        self.deterministic: list[tuple[ast.AST, Scope | None, _Branches]] = []
        self.benchmark_off = False

    @on(ast.If)
    def enter_if(self, node: ast.If) -> None:
        """Tracks the enclosing ``if`` statements."""
        self.ifs.append(node)

    @after(ast.If)
    def leave_if(self, node: ast.If) -> None:
        """Pops it."""
        self.ifs.pop()

    def _where(self, node: ast.AST) -> tuple[ast.AST, Scope | None, _Branches]:
        pos = (node.lineno, node.col_offset)  # type: ignore[attr-defined]
        branches = []
        for stmt in self.ifs:
            last = stmt.body[-1]
            in_body = pos <= (last.end_lineno or 0, last.end_col_offset or 0)
            branches.append((id(stmt), in_body))
        return node, self.ctx.function, tuple(branches)

    @on(ast.Assign)
    def assign(self, node: ast.Assign) -> None:
        """Collects cudnn flag assignments."""
        for target in node.targets:
            qualname = self.ctx.qualname(target)
            if qualname == "torch.backends.cudnn.benchmark":
                if facts.is_true(node.value):
                    self.benchmarks.append(self._where(node))
                else:
                    self.benchmark_off = True
            elif qualname == "torch.backends.cudnn.deterministic" and facts.is_true(node.value):
                self.deterministic.append(self._where(node))

    @on_call("use_deterministic_algorithms")
    def call(self, node: ast.Call) -> None:
        """Collects ``torch.use_deterministic_algorithms(True)``."""
        qualname = self.ctx.qualname(node.func)
        if (
            qualname == "torch.use_deterministic_algorithms"
            and node.args
            and facts.is_true(node.args[0])
        ):
            self.deterministic.append(self._where(node))

    def end_file(self) -> None:
        """Reports benchmark settings that share a code path with determinism."""
        if self.benchmark_off:
            return
        for node, scope, branches in self.benchmarks:
            for other, other_scope, other_branches in self.deterministic:
                if scope is other_scope and _compatible(branches, other_branches):
                    self.report(node, self.message.format(line=other.lineno))  # type: ignore[attr-defined]
                    break


def _compatible(a: _Branches, b: _Branches) -> bool:
    branches = dict(a)
    return all(branches.get(key, side) == side for key, side in b)
