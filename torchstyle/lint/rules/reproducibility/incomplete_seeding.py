"""TS403: incomplete seeding."""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field

from torchstyle.lint import facts
from torchstyle.lint.base import Rule, on_call
from torchstyle.lint.context import FileContext, Scope
from torchstyle.lint.registry import register

_TORCH_SEEDS = frozenset(
    {
        "torch.manual_seed",
        "torch.random.manual_seed",
        "torch.cuda.manual_seed",
        "torch.cuda.manual_seed_all",
    }
)
_NUMPY_SAFE = frozenset(
    {"seed", "default_rng", "RandomState", "Generator", "SeedSequence", "get_state", "set_state"}
    | {"PCG64", "PCG64DXSM", "MT19937", "Philox", "SFC64", "BitGenerator"}
)
_RANDOM_DRAWS = frozenset(
    {"random", "randint", "randrange", "choice", "choices", "shuffle", "sample", "uniform", "gauss"}
    | {"normalvariate", "lognormvariate", "betavariate", "expovariate", "gammavariate"}
    | {
        "triangular",
        "vonmisesvariate",
        "paretovariate",
        "weibullvariate",
        "getrandbits",
        "randbytes",
    }
)
_NUMPY_DRAWS = frozenset(
    {"rand", "randn", "randint", "random", "random_sample", "ranf", "sample", "choice", "shuffle"}
    | {"permutation", "normal", "uniform", "beta", "binomial", "exponential", "gamma", "poisson"}
    | {"standard_normal", "multivariate_normal", "bytes", "laplace", "lognormal", "multinomial"}
)
_CUDA_CALLS = frozenset(
    {"synchronize", "empty_cache", "set_device", "GradScaler", "autocast", "Stream", "Event"}
    | {"memory_allocated", "max_memory_allocated", "reset_peak_memory_stats"}
)
#: torch functions (and in-place tensor methods) that draw random numbers.
_TORCH_DRAWS = frozenset(
    {"rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like"}
    | {"bernoulli", "multinomial", "normal", "poisson", "dropout"}
    | {"normal_", "uniform_", "bernoulli_", "random_", "exponential_", "cauchy_"}
)
#: torch.nn layers whose weights start random, and dropout.
_TORCH_LAYERS = frozenset(
    {"Linear", "Bilinear", "Conv1d", "Conv2d", "Conv3d", "ConvTranspose1d", "ConvTranspose2d"}
    | {"ConvTranspose3d", "Embedding", "EmbeddingBag", "LSTM", "GRU", "RNN", "LSTMCell"}
    | {"GRUCell", "RNNCell", "MultiheadAttention", "Transformer", "TransformerEncoderLayer"}
    | {"TransformerDecoderLayer", "Dropout", "Dropout1d", "Dropout2d", "Dropout3d"}
)
_SEEDS = frozenset({"seed", "manual_seed", "manual_seed_all", "initial_seed", "SeedSequence"})
_SEED = re.compile("seed", re.IGNORECASE)
_IDENTIFIER = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")


def _called_seed_names(source: str) -> list[str]:
    """Names containing "seed" that are called somewhere in ``source`` (a text scan)."""
    names = []
    for match in _SEED.finditer(source):
        start, end = match.start(), match.end()
        while start > 0 and source[start - 1] in _IDENTIFIER:
            start -= 1
        while end < len(source) and source[end] in _IDENTIFIER:
            end += 1
        rest = source[end : end + 20].lstrip()
        if rest.startswith("(") and not source[max(0, start - 8) : start].rstrip(" ").endswith(
            "def"
        ):
            names.append(source[start:end])
    return names


@register
class IncompleteSeeding(Rule):
    """Seeding that leaves a random number generator the code uses unseeded.

    What:
        In a file that seeds some generators explicitly:

        * torch is seeded (``torch.manual_seed``) but ``np.random.*`` or ``random.*`` draws
          numbers and that generator is never seeded (``np.random.seed``, ``random.seed``);
        * numpy or ``random`` is seeded, CUDA is used (``.cuda()``, ``torch.device("cuda")``,
          ``.to("cuda")``), torch draws random numbers (``torch.randn``, dropout, a layer's
          initial weights, a shuffling ``DataLoader``) and torch is not seeded at all.
          ``torch.manual_seed`` seeds every device, so it counts as a CUDA seed.

        Each unit test (a ``test_*`` function in a test file) is judged on its own, with the
        seeds made at module level (not those of helper functions); the rest of the file is judged as a whole. Files that
        call a seeding helper (``seed_everything``, ``set_seed(...)``...) are
        trusted to seed everything.

    Why:
        The guide's training script seeds numpy, torch and CUDA together. Each library has its
        own generator: seeding one leaves augmentations, shuffles or initializations drawn
        from the others different on every run, so the run cannot be reproduced although it
        looks seeded.

    Example:
        torch.manual_seed(0)
        random.shuffle(files)

    Use instead:
        random.seed(0)
        np.random.seed(0)
        torch.manual_seed(0)   # seeds the CPU and every CUDA device
        random.shuffle(files)
    """

    code = "TS403"
    name = "incomplete-seeding"
    message = "incomplete seeding"
    triggers = ("seed",)

    def begin_file(self, ctx: FileContext) -> None:
        """Resets what was seeded and used; looks for seeding helpers in the text."""
        super().begin_file(ctx)
        # seed_everything(...), set_seed(...): trust them to seed everything
        self.helper = any(name not in _SEEDS for name in _called_seed_names(ctx.source))
        self.units: dict[ast.AST | None, _Unit] = {}

    def _unit(self) -> _Unit:
        """The state of the code being walked: its unit test, or the rest of the file."""
        scope: Scope | None = self.ctx.scope
        key: ast.AST | None = None
        tests = self.ctx.imports_any("pytest", "unittest")
        while scope is not None:
            if scope.kind == "function" and facts.is_test_function(
                scope.name, self.ctx.path, tests
            ):
                key = scope.node
            scope = scope.parent
        unit = self.units.get(key)
        if unit is None:
            unit = self.units[key] = _Unit()
        return unit

    @on_call("manual_seed", "manual_seed_all", "seed")
    def seed(self, node: ast.Call) -> None:
        """Collects seeds."""
        qualname = self.ctx.qualname(node.func)
        if qualname in _TORCH_SEEDS:
            seeded = qualname
        elif qualname == "numpy.random.seed":
            seeded = "numpy"
        elif qualname == "random.seed":
            seeded = "random"
        else:
            return
        unit = self._unit()
        unit.seeded.add(seeded)
        if self.ctx.scope.kind == "module":
            unit.module_seeded.add(seeded)

    @on_call(*(_NUMPY_DRAWS | _RANDOM_DRAWS))
    def draw(self, node: ast.Call) -> None:
        """Collects draws from numpy's and Python's global generators."""
        qualname = self.ctx.qualname(node.func)
        if qualname is None:
            return
        head, _, last = qualname.rpartition(".")
        unit = self._unit()
        if head == "numpy.random" and last not in _NUMPY_SAFE:
            unit.numpy_use = unit.numpy_use or node
        elif head == "random" and last in _RANDOM_DRAWS:
            unit.random_use = unit.random_use or node

    @on_call("cuda", "device", "to", *_CUDA_CALLS)
    def cuda(self, node: ast.Call) -> None:
        """Collects the first use of CUDA."""
        unit = self._unit()
        if unit.cuda_use is None and self._uses_cuda(node, self.ctx.qualname(node.func)):
            unit.cuda_use = node

    @on_call(*_TORCH_DRAWS, *_TORCH_LAYERS, "DataLoader", "random_split")
    def torch_draw(self, node: ast.Call) -> None:
        """Notes that torch draws random numbers: sampling, dropout, a layer's initial weights."""
        qualname = self.ctx.qualname(node.func) or ""
        head, _, last = qualname.rpartition(".")
        if (
            (head == "torch" and last in _TORCH_DRAWS)
            or (head == "torch.nn" and last in _TORCH_LAYERS)
            or last == "random_split"
            or (
                last == "DataLoader"
                and facts.is_true(getattr(facts.keyword(node, "shuffle"), "value", None))
            )
            or (
                isinstance(node.func, ast.Attribute)
                and node.func.attr.endswith("_")
                and last in _TORCH_DRAWS
            )
        ):
            self._unit().torch_draw = True

    @staticmethod
    def _uses_cuda(node: ast.Call, qualname: str | None) -> bool:
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr == "cuda" and qualname != "torch.cuda":
            return True
        if qualname is not None and qualname.startswith("torch.cuda."):
            return qualname.rsplit(".", 1)[1] in _CUDA_CALLS
        if qualname == "torch.device" or (isinstance(func, ast.Attribute) and func.attr == "to"):
            values = [*node.args, *(kw.value for kw in node.keywords)]
            return any(
                isinstance(v, ast.Constant)
                and isinstance(v.value, str)
                and v.value.startswith("cuda")
                for v in values
            )
        return False

    def end_file(self) -> None:
        """Reports the generators left unseeded, per unit test and for the rest of the file."""
        if self.helper:
            return
        shared = self.units.get(None, _Unit())
        for key, unit in self.units.items():
            seeded = unit.seeded | (shared.module_seeded if key is not None else set())
            self._judge(unit, seeded, unit.torch_draw)

    def _judge(self, unit: _Unit, seeded: set[str], torch_draws: bool) -> None:
        if seeded & _TORCH_SEEDS:
            if unit.numpy_use is not None and "numpy" not in seeded:
                self.report(
                    unit.numpy_use,
                    f"`{self.ctx.text(unit.numpy_use.func)}` draws from numpy's global generator, "
                    "which torch.manual_seed does not seed; call np.random.seed(seed) too",
                )
            if (
                unit.random_use is not None
                and "random" not in seeded
                and self.ctx.imports_any("random")
            ):
                self.report(
                    unit.random_use,
                    f"`{self.ctx.text(unit.random_use.func)}` draws from Python's `random`, "
                    "which torch.manual_seed does not seed; call random.seed(seed) too",
                )
        elif seeded and unit.cuda_use is not None and torch_draws:
            self.report(
                unit.cuda_use,
                "CUDA is used but torch is never seeded (only numpy/random are); "
                "call torch.manual_seed(seed), which seeds every device",
            )


@dataclass(eq=False)
class _Unit:
    """What one unit test (or the rest of the file) seeds and draws."""

    seeded: set[str] = field(default_factory=set)
    #: Seeds made at module level: they run before every unit test of the file.
    module_seeded: set[str] = field(default_factory=set)
    numpy_use: ast.Call | None = None
    random_use: ast.Call | None = None
    cuda_use: ast.AST | None = None
    torch_draw: bool = False
