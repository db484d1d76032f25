"""Seeds, backend flags and RNG state capture for exact resume."""

from __future__ import annotations

import os
import random
from typing import Any

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    """Seeds python, numpy, torch and every CUDA device (the guide's seeding, completed)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    torch.cuda.manual_seed_all(seed)


def configure_backends(*, deterministic: bool, cudnn_benchmark: bool) -> None:
    """Sets cuDNN and determinism flags.

    Args:
        deterministic: Use deterministic algorithms only; an op without one raises.
        cudnn_benchmark: Let cuDNN time algorithms per input shape. Only pays off when shapes
            are fixed (the guide's caveat), so it is off unless asked for.
    """
    torch.backends.cudnn.benchmark = cudnn_benchmark
    torch.backends.cudnn.deterministic = deterministic
    if deterministic:
        # cuBLAS needs a fixed workspace to be deterministic.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(deterministic)


def capture_rng_state() -> dict[str, Any]:
    """Returns every RNG state as tensors and plain values (loadable with ``weights_only``)."""
    np_state = np.random.get_state(legacy=True)
    assert isinstance(np_state, tuple)  # legacy=True: the tuple form
    state: dict[str, Any] = {
        "python": _to_lists(random.getstate()),
        "numpy": {
            "name": np_state[0],
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    random.setstate(_to_tuples(state["python"]))
    npy = state["numpy"]
    np.random.set_state(
        (
            npy["name"],
            npy["keys"].numpy().astype(np.uint32),
            npy["pos"],
            npy["has_gauss"],
            npy["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        cuda_states = state["cuda"][: torch.cuda.device_count()]
        torch.cuda.set_rng_state_all(cuda_states)


def _to_lists(x: Any) -> Any:
    return [_to_lists(v) for v in x] if isinstance(x, (tuple, list)) else x


def _to_tuples(x: Any) -> Any:
    return tuple(_to_tuples(v) for v in x) if isinstance(x, list) else x


#: What a run's numbers depend on besides its flags: a rerun or resume that differs in one of
#: these is not bit-identical (the CPU thread count changes how sums are split and rounded).
ENVIRONMENT_KEYS = ("cpu_threads", "device", "python", "torch", "torchvision", "numpy")


def environment(device: str | None = None) -> dict[str, Any]:
    """What this process computes with: CPU threads, device and library versions."""
    import platform

    try:
        import torchvision

        vision: str | None = torchvision.__version__
    except ImportError:
        vision = None
    if not device or device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and torch.cuda.is_available():
        device = f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    return {
        "cpu_threads": torch.get_num_threads(),
        "device": device,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": vision,
        "numpy": np.__version__,
    }


def environment_changes(before: dict[str, Any] | None, now: dict[str, Any]) -> list[str]:
    """``name old -> new`` for each :data:`ENVIRONMENT_KEYS` entry that differs."""
    if not before:
        return []
    return [
        f"{key.replace('_', ' ')} {before.get(key)} -> {now.get(key)}"
        for key in ENVIRONMENT_KEYS
        if key in before and before.get(key) != now.get(key)
    ]
