"""Shared fixtures for the torchstyle.nn tests."""

from __future__ import annotations

import warnings

import pytest
import torch

from torchstyle.nn import Vgg19Features


@pytest.fixture(autouse=True)
def _single_thread():
    """Runs each test with one intra-op thread, restoring the setting afterwards.

    These tensors are tiny: a second thread adds only synchronisation, and on a shared 2-core
    machine that made single tests 10 to 50 times slower and their timing erratic.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def no_vgg_cache(tmp_path, monkeypatch):
    """Points torch's cache at an empty folder, so no real VGG19 weights can be found."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    return tmp_path / "torch_home" / "hub" / "checkpoints"


@pytest.fixture(scope="session")
def vgg_features(tmp_path_factory) -> Vgg19Features:
    """One random-weight Vgg19Features for the whole session (building it costs ~0.3 s)."""
    with pytest.MonkeyPatch.context() as mp, warnings.catch_warnings():
        mp.setenv("TORCH_HOME", str(tmp_path_factory.mktemp("torch_home")))
        warnings.simplefilter("ignore", UserWarning)
        return Vgg19Features()
