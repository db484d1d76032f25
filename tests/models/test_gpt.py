"""``gpt``: learns a sequence, evaluates per sequence, samples as asked, refuses bad arguments."""

from __future__ import annotations

import math

import pytest
import torch

from torchstyle.errors import UserError
from torchstyle.models import create_model
from torchstyle.models.gpt import GPT
from torchstyle.nn import TransformerBlock
from torchstyle.spec import DataSpec

TINY = {"context": 32, "dim": 32, "depth": 2, "num_heads": 2}
TEXT = b"def add(a, b):\n    return a + b\n\n" * 40


def _windows(context: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    data = torch.tensor(list(TEXT))
    starts = torch.arange(n) * 3
    rows = data[starts.unsqueeze(1) + torch.arange(context + 1)]  # (n, T+1)
    return rows[:, :-1], rows[:, 1:]


def test_learns_a_repeated_text_well_below_chance():
    torch.manual_seed(0)
    model = create_model("gpt", **TINY)
    (opt,) = model.configure_optimizers(lr=3e-3).values()
    batch = _windows(32, 16)
    first = model.training_step(batch, "model")["loss"].item()
    for _ in range(60):
        opt.zero_grad(set_to_none=True)
        out = model.training_step(batch, "model")
        out["loss"].backward()
        opt.step()
    assert first == pytest.approx(math.log(256), rel=0.05)  # a fresh model guesses uniformly
    assert out["loss"].item() < 1.0
    torch.testing.assert_close(out["bits_per_byte"], out["loss"].detach() / math.log(2))


def test_evaluation_is_per_sequence_and_averages_to_the_batch_loss():
    torch.manual_seed(0)
    model = create_model("gpt", **TINY).eval()
    x, y = _windows(32, 5)
    out = model.evaluation_step((x, y))
    assert out["loss"].shape == out["bits_per_byte"].shape == (5,)
    batch_loss = model.training_step((x, y), "model")["loss"]
    torch.testing.assert_close(out["loss"].mean(), batch_loss)
    torch.testing.assert_close(out["bits_per_byte"], out["loss"] / math.log(2))


def test_from_spec_takes_vocabulary_and_context_and_hparams_rebuild_it():
    spec = DataSpec(channels=1, image_size=24, num_classes=256)
    model = GPT.from_spec(spec, dim=16, depth=1, num_heads=2)
    assert model.hparams()["context"] == 24 and model.hparams()["vocab_size"] == 256
    again = create_model("gpt", **model.hparams())
    again.load_state_dict(model.state_dict())  # strict: same architecture
    assert GPT.shard_blocks == (TransformerBlock,)
    assert sum(isinstance(m, TransformerBlock) for m in model.modules()) == 1


def test_sampling_follows_temperature_top_k_and_seed():
    torch.manual_seed(0)
    model = create_model("gpt", **TINY)
    greedy = model.complete("def ", max_new_tokens=12, temperature=0)
    assert greedy.startswith("def ") and len(greedy.encode("utf-8", "replace")) >= 4
    assert model.complete("def ", max_new_tokens=12, temperature=0) == greedy
    # top_k=1 leaves only the most likely byte: whatever the temperature, that is greedy.
    assert model.complete("def ", max_new_tokens=12, temperature=5.0, top_k=1, seed=3) == greedy
    a = model.complete("def ", max_new_tokens=30, temperature=1.0, top_k=None, seed=1)
    b = model.complete("def ", max_new_tokens=30, temperature=1.0, top_k=None, seed=1)
    c = model.complete("def ", max_new_tokens=30, temperature=1.0, top_k=None, seed=2)
    assert a == b != c
    assert model.training  # sampling restores the mode it found


def test_a_prompt_longer_than_the_context_is_read_from_its_end():
    torch.manual_seed(0)
    model = create_model("gpt", **TINY)
    ids = torch.randint(256, (2, 50))
    out = model.generate(ids, max_new_tokens=3, temperature=0)
    assert out.shape == (2, 53) and torch.equal(out[:, :50], ids)
    tail = model.generate(ids[:, -32:], max_new_tokens=1, temperature=0)
    assert torch.equal(out[:, 50], tail[:, 32])


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda m: m.complete("", max_new_tokens=1), "prompt is empty"),
        (lambda m: m.complete("x", temperature=-1), "temperature must be >= 0"),
        (lambda m: m.complete("x", top_k=0), "top-k must be >= 1"),
        (lambda m: create_model("gpt", dim=30, num_heads=4), "does not split into 4 heads"),
        (lambda m: create_model("gpt", depth=0), "depth and num_heads must be positive"),
        (lambda m: create_model("gpt", context=0), "context must be a positive"),
        (lambda m: create_model("gpt", dropout=1.0), r"dropout must be in \[0, 1\)"),
    ],
)
def test_bad_arguments_are_user_errors_naming_the_fix(call, message):
    model = create_model("gpt", **TINY)
    with pytest.raises(UserError, match=message):
        call(model)
