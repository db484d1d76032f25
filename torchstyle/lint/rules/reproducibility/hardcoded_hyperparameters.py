"""TS401: a training script with hard-coded hyperparameters and no command-line parsing."""

from __future__ import annotations

import ast
import os
import re

from torchstyle.lint import facts, semantic
from torchstyle.lint import vocabulary as vocab
from torchstyle.lint.base import Rule, on, on_call
from torchstyle.lint.context import FileContext, LoopFrame
from torchstyle.lint.registry import register

#: Importing any of these means the script reads its settings from outside the file.
_CONFIG_MODULES = (
    "argparse",
    "click",
    "typer",
    "fire",
    "hydra",
    "jsonargparse",
    "absl",
    "tyro",
    "simple_parsing",
    "docopt",
    "configargparse",
    "omegaconf",
    "gin",
    "ml_collections",
    "yaml",
    "toml",
    "tomllib",
    "tomli",
)
_CONFIG_NAMES = frozenset(
    {
        "transformers.HfArgumentParser",
        "lightning.pytorch.cli.LightningCLI",
        "pytorch_lightning.cli.LightningCLI",
    }
)
_HYPERPARAMETER = re.compile(
    r"^(?:lr|learning_rate|batch_size|epochs|num_epochs|n_epochs|max_epochs|weight_decay"
    r"|momentum|num_steps|max_steps|num_iters|n_iters)$",
    re.IGNORECASE,
)
_OPTIMIZERS = (
    "SGD",
    "Adam",
    "AdamW",
    "Adamax",
    "NAdam",
    "RAdam",
    "RMSprop",
    "Rprop",
    "Adagrad",
    "Adadelta",
    "Adafactor",
    "ASGD",
    "LBFGS",
    "SparseAdam",
)


@register
class HardcodedHyperparameters(Rule):
    """A training script with hard-coded hyperparameters and no command-line parsing.

    What:
        A file that trains (a loop calls ``.backward()`` or ``optimizer.step()``) and runs as
        a script (``if __name__ == "__main__":``, or a training or epoch loop at module
        level), with a literal
        hyperparameter (``lr=0.01``, ``batch_size=64``, ``EPOCHS = 10``,
        ``for epoch in range(10)``) and no command-line or config parsing: none of argparse,
        click, typer, fire, hydra, jsonargparse, absl, tyro, simple_parsing, docopt,
        configargparse, omegaconf, gin, ml_collections, a YAML/TOML loader, ``sys.argv``, or
        a configurator file run with ``exec(open(...).read())`` or ``runpy.run_path``, nor a
        function or module imported from the project's own files that parses flags
        (``from utils import parse_args``). Test files (``test_*.py``, ``*_test.py``,
        anything under ``tests/``), files whose every training loop is a short fixed-length
        one that is timed (``for _ in range(20):`` between ``perf_counter()`` calls: a benchmark) and modules of a package not
        named like an entry point (a library's ``__main__`` demo) are left alone.

    Why:
        The guide: "use command line arguments" for batch size, learning rate and the like,
        and save the parsed arguments next to the results (its ``config.txt``). Editing the
        file for every experiment loses which settings produced which run, and sweeps need
        copies of the script.

    Example:
        if __name__ == "__main__":
            optimizer = torch.optim.Adam(model.parameters(), lr=0.001)
            for epoch in range(10):
                ...

    Use instead:
        if __name__ == "__main__":
            parser = argparse.ArgumentParser()
            parser.add_argument("--lr", type=float, default=1e-3)
            parser.add_argument("--epochs", type=int, default=10)
            opt = parser.parse_args()
            with open("config.txt", "w") as f:
                f.write(str(opt))
    """

    code = "TS401"
    name = "hardcoded-hyperparameters"
    message = "training script hard-codes {what} and parses no command line; use argparse (or click, typer, ...)"
    triggers = ("backward", ".step(")

    def begin_file(self, ctx: FileContext) -> None:
        """Resets the evidence."""
        super().begin_file(ctx)
        self.evidence: list[tuple[ast.AST, str]] = []
        self.trains = False
        self.is_script = False
        self.parses = False
        #: a training loop that is not a short fixed-length one (a benchmark or a demo)
        self.long_training = False

    @on(ast.If)
    def main_guard(self, node: ast.If) -> None:
        """Notes ``if __name__ == "__main__":``."""
        test = node.test
        if isinstance(test, ast.Compare) and getattr(test.left, "id", None) == "__name__":
            self.is_script = True

    @on_call("HfArgumentParser", "LightningCLI")
    def parser(self, node: ast.Call) -> None:
        """Notes argument parsers that come with frameworks."""
        if self.ctx.qualname(node.func) in _CONFIG_NAMES:
            self.parses = True

    @on_call("exec", "run_path")
    def configurator(self, node: ast.Call) -> None:
        """Notes ``exec(open("configurator.py").read())``: a file that parses ``sys.argv``."""
        if node.args and not isinstance(node.args[0], ast.Constant):
            self.parses = True

    @on(ast.keyword)
    def learning_rate(self, node: ast.keyword) -> None:
        """Collects ``lr=0.01`` in any call."""
        if node.arg in ("lr", "learning_rate") and facts.is_number_literal(node.value):
            self.evidence.append((node.value, f"`{node.arg}={self.ctx.text(node.value)}`"))

    @on_call("DataLoader")
    def loader(self, node: ast.Call) -> None:
        """Collects ``DataLoader(..., batch_size=64)``."""
        if self.ctx.qualname(node.func) in vocab.LOADERS:
            kw = facts.keyword(node, "batch_size")
            if kw is not None and facts.is_number_literal(kw.value):
                self.evidence.append((kw.value, f"`batch_size={self.ctx.text(kw.value)}`"))

    @on_call(*_OPTIMIZERS)
    def optimizer(self, node: ast.Call) -> None:
        """Collects a learning rate passed by position: ``SGD(params, 0.1)``."""
        qualname = self.ctx.qualname(node.func)
        lr = node.args[1] if len(node.args) > 1 else None
        if (
            lr is not None
            and qualname
            and facts.is_optimizer_qualname(qualname)
            and facts.is_number_literal(lr)
        ):
            self.evidence.append((lr, f"the learning rate `{self.ctx.text(lr)}`"))

    @on(ast.Assign)
    def assign(self, node: ast.Assign) -> None:
        """Collects ``LR = 0.01``-style assignments."""
        if len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            if _HYPERPARAMETER.match(name) and facts.is_number_literal(node.value):
                self.evidence.append((node, f"`{name} = {self.ctx.text(node.value)}`"))

    @on(ast.For)
    def epoch_loop(self, node: ast.For) -> None:
        """Collects ``for epoch in range(10)``."""
        target, it = node.target, node.iter
        if not (isinstance(target, ast.Name) and "epoch" in target.id.lower()):
            return
        if (
            isinstance(it, ast.Call)
            and getattr(it.func, "id", None) == "range"
            and 0 < len(it.args) <= 2
            and facts.is_number_literal(it.args[-1])
        ):
            self.evidence.append((it, f"`{self.ctx.text(it)}` epochs"))

    def on_loop_exit(self, frame: LoopFrame) -> None:
        """Notes that the file trains, and whether it runs an epoch loop at module level."""
        if frame.has_step:
            self.trains = True
        if frame.direct_step:
            # a benchmark steps a fixed handful of times; training iterates over data or
            # over epochs
            outer: LoopFrame | None = frame.parent
            epochs = False
            while outer is not None:
                epochs |= any("epoch" in t.lower() for t in outer.targets)
                outer = outer.parent
            self.long_training |= epochs or not facts.short_fixed_loop(frame.node)
        if self.ctx.scope.kind == "module" and (
            frame.has_step or any("epoch" in t.lower() for t in frame.targets)
        ):
            self.is_script = True

    def end_file(self) -> None:
        """Reports the first literal hyperparameter of a script that parses nothing."""
        if not (self.trains and self.is_script and self.evidence) or self.parses:
            return
        if _is_test_file(self.ctx.path):
            return  # tests fix their settings on purpose
        if "argv" in self.ctx.source:
            return  # reads sys.argv itself
        if self.ctx.imports_any(*_CONFIG_MODULES):
            return
        if not self.long_training and _BENCHMARK.search(self.ctx.source):
            return  # every training loop is a short fixed-length one, timed: a benchmark
        if _library_module(self.ctx.path):
            return  # a module of a package: its __main__ block is a demo of the library
        if self._parses_elsewhere():
            return
        node, what = min(self.evidence, key=lambda e: (e[0].lineno, e[0].col_offset))  # type: ignore[attr-defined]
        self.report(node, self.message.format(what=what))

    def _parses_elsewhere(self) -> bool:
        """Whether a name this file imports from the project's own modules parses flags
        (``from utils import parse_args``; ``import opts`` then ``opts.parse()``)."""
        source = self.ctx.source
        for alias in self.ctx.imports:
            if f"{alias}(" not in source and f"{alias}." not in source:
                continue
            if semantic.PROJECT.parses_flags_via(self.ctx.path, alias):
                return True
        return False


_BENCHMARK = re.compile(r"perf_counter|timeit|time\.time\(\)|benchmark|profiler|synchronize\(")
_ENTRY_POINT = re.compile(r"^(?:train|main|run|finetune|pretrain|fit|launch)", re.IGNORECASE)


def _library_module(path: str) -> bool:
    """Whether ``path`` is a module of a package (not named like an entry point)."""
    folder, name = os.path.split(os.path.abspath(path))
    if _ENTRY_POINT.match(name):
        return False
    return os.path.isfile(os.path.join(folder, "__init__.py"))


def _is_test_file(path: str) -> bool:
    parts = path.replace("\\", "/").split("/")
    name = parts[-1]
    return (
        name.startswith("test_")
        or name.endswith("_test.py")
        or any(p in ("tests", "test") for p in parts[:-1])
    )
