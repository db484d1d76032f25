"""``gpt``: a decoder-only transformer over bytes (vocabulary 256), built from ``torchstyle.nn``.

Tokens are bytes, so any text is its own encoding and no tokenizer file travels with a run.
The model is token and position embeddings, ``depth`` pre-norm :class:`TransformerBlock`s, a
final norm and a linear head. Sharding strategies wrap each block on its own
(:attr:`GPT.shard_blocks`), so at most one block's full weights exist at a time.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from torchstyle.errors import UserError
from torchstyle.models import register_model
from torchstyle.models.base import Batch, TorchstyleModel
from torchstyle.nn import TransformerBlock
from torchstyle.spec import DataSpec

VOCAB_SIZE = 256  # one token per byte value


@register_model("gpt")
class GPT(TorchstyleModel):
    """Decoder-only transformer language model over bytes.

    Args:
        vocab_size: Token values (256 for bytes).
        context: Longest sequence the model reads (positions it has embeddings for).
        dim: Model width.
        depth: Number of transformer blocks.
        num_heads: Attention heads per block.
        mlp_ratio: MLP hidden width over ``dim``.
        dropout: Dropout in embeddings, attention and MLPs (training only).
    """

    monitor = ("loss", "min")
    # The Python standard library's own source: a corpus present on every machine.
    default_data = "stdlib"
    predict_kind = "text"
    data_layout = "tokens"
    # For a byte corpus the data source reads the "image size" as its context length.
    default_image_size = 64
    default_optimizer = "adamw"
    default_lr = 2e-3
    # Sharding strategies give each of these its own shard unit.
    shard_blocks: ClassVar[tuple[type[nn.Module], ...]] = (TransformerBlock,)

    def __init__(
        self,
        *,
        vocab_size: int = VOCAB_SIZE,
        context: int = 64,
        dim: int = 64,
        depth: int = 4,
        num_heads: int = 4,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("context", context), ("dim", dim)):
            if value < 1:
                raise UserError(f"gpt: {name} must be a positive integer, got {value}")
        if depth < 1 or num_heads < 1:
            raise UserError(
                f"gpt: depth and num_heads must be positive, got depth={depth}, "
                f"num_heads={num_heads}"
            )
        if dim % num_heads:
            raise UserError(
                f"gpt: dim {dim} does not split into {num_heads} heads; pass a dim divisible "
                "by num_heads, e.g. --model-arg dim=64 --model-arg num_heads=4"
            )
        if not 0.0 <= dropout < 1.0:
            raise UserError(f"gpt: dropout must be in [0, 1), got {dropout}")
        self.context = context
        self.token_embedding = nn.Embedding(vocab_size, dim)
        self.position_embedding = nn.Embedding(context, dim)
        self.dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(
            TransformerBlock(dim=dim, num_heads=num_heads, mlp_ratio=mlp_ratio, dropout=dropout)
            for _ in range(depth)
        )
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab_size, bias=False)
        self._init_weights(depth)

    @classmethod
    def from_spec(cls, spec: DataSpec, **kwargs: Any) -> TorchstyleModel:
        """Vocabulary from the spec's classes, context from its sequence length."""
        args: dict[str, Any] = {"vocab_size": spec.num_classes or VOCAB_SIZE}
        if spec.image_size:
            args["context"] = spec.image_size
        args.update(kwargs)
        return cls(**args)

    def _init_weights(self, depth: int) -> None:
        # GPT-2's initialisation: small normal weights, and the projections that write into
        # the residual stream scaled down by depth so the stream's variance stays bounded.
        for name, p in self.named_parameters():
            if p.ndim < 2:
                continue
            std = 0.02
            if name.endswith(("attn.proj.weight", "mlp.net.2.weight")):
                std = 0.02 / math.sqrt(2 * depth)
            nn.init.normal_(p, mean=0.0, std=std)
        for m in self.modules():
            if isinstance(m, nn.Linear) and m.bias is not None:
                nn.init.zeros_(m.bias)

    def forward(self, tokens: Tensor) -> Tensor:
        """Next-token logits.

        Args:
            tokens: Token ids ``(B, T)`` with ``T <= context``.

        Returns:
            Logits ``(B, T, vocab_size)``; position ``t`` predicts token ``t + 1``.
        """
        t = tokens.shape[1]
        positions = torch.arange(t, device=tokens.device)  # (T,)
        x = self.dropout(self.token_embedding(tokens) + self.position_embedding(positions))
        for block in self.blocks:
            x = block(x)  # (B, T, C)
        logits: Tensor = self.head(self.norm(x))  # (B, T, V)
        return logits

    def training_step(self, batch: Batch, phase: str) -> dict[str, Tensor]:
        """Mean next-byte cross-entropy (nats) of a batch; bits per byte rides along."""
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        return {"loss": loss, "bits_per_byte": loss.detach() / math.log(2)}

    @torch.no_grad()
    def evaluation_step(self, batch: Batch) -> dict[str, Tensor]:
        """Per-sequence mean loss (nats) and bits per byte, each ``(B,)``.

        Every sequence has the same length, so the engine's mean over sequences is the mean
        over bytes.
        """
        x, y = batch
        logits = self(x)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
        loss = loss.view(y.shape).float().mean(dim=1)  # (B,)
        return {"loss": loss, "bits_per_byte": loss / math.log(2)}

    @torch.no_grad()
    def generate(
        self,
        tokens: Tensor,
        *,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """Samples a continuation one token at a time.

        Args:
            tokens: Prompt ids ``(B, T0)``, ``T0 >= 1``; only the last ``context`` are read.
            max_new_tokens: Tokens to append.
            temperature: Divides the logits; 0 picks the most likely token (greedy).
            top_k: Sample among the ``top_k`` most likely tokens only; None for all.
            generator: Random source of the draws (for reproducible samples).

        Returns:
            ``(B, T0 + max_new_tokens)`` ids: the prompt, then the sample.

        Raises:
            UserError: An empty prompt, a negative temperature or a ``top_k`` below 1.
        """
        if tokens.shape[1] == 0:
            raise UserError(
                "the prompt is empty; pass at least one character, e.g. --prompt 'def '"
            )
        if temperature < 0:
            raise UserError(f"temperature must be >= 0, got {temperature}; 0 samples greedily")
        if top_k is not None and top_k < 1:
            raise UserError(f"top-k must be >= 1, got {top_k}; omit it to sample from all bytes")
        was_training = self.training
        self.eval()
        try:
            for _ in range(max_new_tokens):
                logits = self(tokens[:, -self.context :])[:, -1, :].float()  # (B, V)
                tokens = torch.cat([tokens, self._draw(logits, temperature, top_k, generator)], 1)
        finally:
            self.train(was_training)
        return tokens

    @staticmethod
    def _draw(
        logits: Tensor, temperature: float, top_k: int | None, generator: torch.Generator | None
    ) -> Tensor:
        """One token per row ``(B, 1)`` from next-token logits ``(B, V)``."""
        if temperature == 0:
            return logits.argmax(dim=-1, keepdim=True)
        logits = logits / temperature
        if top_k is not None and top_k < logits.shape[-1]:
            kth = logits.topk(top_k, dim=-1).values[:, -1:]  # (B, 1)
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = logits.softmax(dim=-1)
        return torch.multinomial(probs, 1, generator=generator)

    def complete(
        self,
        prompt: str,
        *,
        max_new_tokens: int = 200,
        temperature: float = 0.8,
        top_k: int | None = 40,
        seed: int | None = None,
    ) -> str:
        """Continues ``prompt`` (UTF-8 bytes in, UTF-8 text out; a cut character shows as U+FFFD).

        Args:
            prompt: The start of the text.
            max_new_tokens: Bytes to sample.
            temperature: Sampling temperature; 0 is greedy.
            top_k: Sample among the most likely bytes only; None for all.
            seed: Seeds the draws; None draws from torch's global generator.

        Returns:
            The prompt followed by the sampled continuation.
        """
        device = self.head.weight.device
        ids = torch.tensor([list(prompt.encode("utf-8"))], dtype=torch.long, device=device)
        generator = None
        if seed is not None:
            generator = torch.Generator(device=device).manual_seed(seed)
        out = self.generate(
            ids.view(1, -1),
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_k=top_k,
            generator=generator,
        )
        return bytes(out[0].tolist()).decode("utf-8", errors="replace")
