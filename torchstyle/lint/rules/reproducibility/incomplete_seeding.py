"""TS403: incomplete seeding."""

from __future__ import annotations

import ast
import re

from torchstyle.lint.base import Rule, on_call
from torchstyle.lint.context import FileContext
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
        if rest.startswith("("):
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
          ``.to("cuda")``), and torch is not seeded at all. ``torch.manual_seed`` seeds every
          device, so it counts as a CUDA seed.

        Files that call a seeding helper (``seed_everything``, ``set_seed(...)``...) are
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
        self.seeded: set[str] = set()
        # seed_everything(...), set_seed(...): trust them to seed everything
        self.helper = any(name not in _SEEDS for name in _called_seed_names(ctx.source))
        self.numpy_use: ast.Call | None = None
        self.random_use: ast.Call | None = None
        self.cuda_use: ast.AST | None = None

    @on_call("manual_seed", "manual_seed_all", "seed")
    def seed(self, node: ast.Call) -> None:
        """Collects seeds."""
        qualname = self.ctx.qualname(node.func)
        if qualname in _TORCH_SEEDS:
            self.seeded.add(qualname)
        elif qualname == "numpy.random.seed":
            self.seeded.add("numpy")
        elif qualname == "random.seed":
            self.seeded.add("random")

    @on_call(*(_NUMPY_DRAWS | _RANDOM_DRAWS))
    def draw(self, node: ast.Call) -> None:
        """Collects draws from numpy's and Python's global generators."""
        qualname = self.ctx.qualname(node.func)
        if qualname is None:
            return
        head, _, last = qualname.rpartition(".")
        if head == "numpy.random" and last not in _NUMPY_SAFE:
            self.numpy_use = self.numpy_use or node
        elif head == "random" and last in _RANDOM_DRAWS:
            self.random_use = self.random_use or node

    @on_call("cuda", "device", "to", *_CUDA_CALLS)
    def cuda(self, node: ast.Call) -> None:
        """Collects the first use of CUDA."""
        if self.cuda_use is None and self._uses_cuda(node, self.ctx.qualname(node.func)):
            self.cuda_use = node

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
        """Reports the generators left unseeded."""
        if self.helper:
            return
        torch_seeded = bool(self.seeded & _TORCH_SEEDS)
        if torch_seeded:
            if self.numpy_use is not None and "numpy" not in self.seeded:
                self.report(
                    self.numpy_use,
                    f"`{self.ctx.text(self.numpy_use.func)}` draws from numpy's global generator, "
                    "which torch.manual_seed does not seed; call np.random.seed(seed) too",
                )
            if (
                self.random_use is not None
                and "random" not in self.seeded
                and self.ctx.imports_any("random")
            ):
                self.report(
                    self.random_use,
                    f"`{self.ctx.text(self.random_use.func)}` draws from Python's `random`, "
                    "which torch.manual_seed does not seed; call random.seed(seed) too",
                )
        elif self.seeded and self.cuda_use is not None:
            self.report(
                self.cuda_use,
                "CUDA is used but torch is never seeded (only numpy/random are); "
                "call torch.manual_seed(seed), which seeds every device",
            )
