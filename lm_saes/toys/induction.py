"""A toy induction task: continue a random sequence that repeats.

Data. A context is [BOS] t_1 .. t_n f_1 .. f_g t_1 .. t_n f_g+1 .. f_G: a random sequence, a gap
of g random filler tokens (g uniform in 0..max_gap, so the distance between the two copies varies
and no fixed positional offset predicts the repeat), the sequence again, then filler to a fixed
length. Tokens are uniform over 1..vocab_size-1 (0 is BOS). From the repeat's first token on, the
next token is predictable by induction (find the previous occurrence of the current token, copy
what followed it); nothing else is. The loss is the next-token cross-entropy on those n - 1
predictable positions (the "repeated half"), and the accuracy there is the toy's score.

Model. An attention-only transformer: token and learned position embeddings, ``n_layers``
blocks r <- r + out_proj(causal multi-head attention with q_proj, k_proj, v_proj) (all nn.Linear
without bias, named ``blocks.i.attn.q_proj`` etc.), then the unembedding ``unembed``. Induction
needs two layers: a previous-token head, then a head that attends to the token after the
previous occurrence of the current one.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from lm_saes.toys.config import InductionConfig

BOS = 0


class SequenceData(NamedTuple):
    """A set of contexts: ``tokens`` [n, ctx] (the input) and where each repeat starts."""

    tokens: Int[Tensor, "n ctx"]
    repeat_start: Int[Tensor, "n"]


class SequenceSplits(NamedTuple):
    train: SequenceData
    test: SequenceData


class Attention(nn.Module):
    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.n_heads = n_heads
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.v_proj = nn.Linear(d_model, d_model, bias=False)
        self.out_proj = nn.Linear(d_model, d_model, bias=False)

    def forward(self, x: Float[Tensor, "batch ctx d_model"]) -> Float[Tensor, "batch ctx d_model"]:
        b, s, d = x.shape
        heads = lambda t: t.view(b, s, self.n_heads, d // self.n_heads).transpose(1, 2)  # [b, heads, ctx, d_head]
        mixed = F.scaled_dot_product_attention(heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x)),
                                               is_causal=True)
        return self.out_proj(mixed.transpose(1, 2).reshape(b, s, d))


class Block(nn.Module):
    def __init__(self, d_model: int, n_heads: int) -> None:
        super().__init__()
        self.attn = Attention(d_model, n_heads)

    def forward(self, x: Tensor) -> Tensor:
        return x + self.attn(x)


class InductionTransformer(nn.Module):
    def __init__(self, cfg: InductionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.pos_embed = nn.Embedding(context_length(cfg), cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg.d_model, cfg.n_heads) for _ in range(cfg.n_layers))
        self.unembed = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)

    def forward(self, tokens: Int[Tensor, "batch ctx"]) -> Float[Tensor, "batch ctx vocab"]:
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.embed(tokens) + self.pos_embed(positions)
        for block in self.blocks:
            x = block(x)
        return self.unembed(x)


def context_length(cfg: InductionConfig) -> int:
    return 1 + 2 * cfg.half_length + cfg.max_gap


def sample(cfg: InductionConfig, n: int, generator: torch.Generator) -> SequenceData:
    tokens = torch.randint(1, cfg.vocab_size, (n, context_length(cfg)), generator=generator)  # filler everywhere
    tokens[:, 0] = BOS
    gap = torch.randint(0, cfg.max_gap + 1, (n,), generator=generator)
    start = 1 + cfg.half_length + gap  # [n]: position of the repeat's first token
    copied = start[:, None] + torch.arange(cfg.half_length)  # [n, half]
    tokens.scatter_(1, copied, tokens[:, 1:1 + cfg.half_length])
    return SequenceData(tokens, start)


def make_data(cfg: InductionConfig) -> SequenceSplits:
    generator = torch.Generator().manual_seed(cfg.data_seed)
    return SequenceSplits(sample(cfg, cfg.n_train, generator), sample(cfg, cfg.n_test, generator))


def _scored(model: nn.Module, batch: SequenceData) -> tuple[Tensor, Tensor]:
    """Logits [n * (half - 1), vocab] at the predictable positions, and the tokens that follow."""
    logits = model(batch.tokens)  # [n, ctx, vocab]
    where = batch.repeat_start[:, None] + torch.arange(model.cfg.half_length - 1, device=logits.device)  # [n, half-1]
    scored = logits.gather(1, where[..., None].expand(-1, -1, logits.shape[-1]))  # [n, half - 1, vocab]
    targets = batch.tokens.gather(1, where + 1)
    return scored.reshape(-1, logits.shape[-1]), targets.reshape(-1)


def loss(model: nn.Module, batch: SequenceData) -> Float[Tensor, ""]:
    """Cross-entropy of the next token over the repeated half."""
    logits, targets = _scored(model, batch)
    return F.cross_entropy(logits, targets)


@torch.no_grad()
def metrics(model: nn.Module, data: SequenceData) -> dict[str, float]:
    """Loss and accuracy on the repeated half."""
    logits, targets = _scored(model, data)
    return {"loss": float(F.cross_entropy(logits, targets)),
            "accuracy": float((logits.argmax(-1) == targets).float().mean())}
