"""Modular addition: learn (a + b) mod p from the pair (a, b) (nrimsky/devinterp's MLP).

Model. Token embedding E [p, d_embed]; one hidden layer over the two embeddings,
h = act(W_a E[a] + b_a + W_b E[b] + b_b) [d_hidden]; logits [p] from a free unembedding
U h + c or, tied, (V h + c) E^T. Trained by cross-entropy; a grokked model represents the
residues by a few Fourier frequencies of E (``lm_saes.llc.fourier``).

Data. All p^2 ordered pairs, labelled (a + b) mod p (or, with ``random_labels``, a seeded
random residue per pair), split at random (seeded) into train and test by ``train_fraction``.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor, nn

from lm_saes.toys.config import ModularAdditionConfig


class PairData(NamedTuple):
    """A set of examples: ``pairs`` [n, 2] (a, b) and ``labels`` [n]."""

    pairs: Int[Tensor, "n 2"]
    labels: Int[Tensor, "n"]


class ModularAdditionData(NamedTuple):
    train: PairData
    test: PairData


class ModularAdditionMLP(nn.Module):
    def __init__(self, cfg: ModularAdditionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.p, cfg.d_embed)
        self.left = nn.Linear(cfg.d_embed, cfg.d_hidden)
        self.right = nn.Linear(cfg.d_embed, cfg.d_hidden)
        self.act = nn.GELU() if cfg.activation == "gelu" else nn.ReLU()
        self.unembed = nn.Linear(cfg.d_hidden, cfg.d_embed if cfg.tie_unembed else cfg.p)

    def hidden(self, pairs: Int[Tensor, "batch 2"]) -> Float[Tensor, "batch d_hidden"]:
        return self.act(self.left(self.embed(pairs[:, 0])) + self.right(self.embed(pairs[:, 1])))

    def pre_unembed(self, pairs: Int[Tensor, "batch 2"]) -> Float[Tensor, "batch d"]:
        """The vector the unembedding matrix reads: the hidden layer, or (tied) V h + c."""
        h = self.hidden(pairs)
        return self.unembed(h) if self.cfg.tie_unembed else h

    def forward(self, pairs: Int[Tensor, "batch 2"]) -> Float[Tensor, "batch p"]:
        out = self.unembed(self.hidden(pairs))  # [batch, p], or [batch, d_embed] when tied
        return out @ self.embed.weight.T if self.cfg.tie_unembed else out


def all_pairs(p: int) -> Int[Tensor, "p_squared 2"]:
    """Every (a, b) in row-major order: row a * p + b."""
    a, b = torch.meshgrid(torch.arange(p), torch.arange(p), indexing="ij")
    return torch.stack([a.flatten(), b.flatten()], dim=1)


def make_data(cfg: ModularAdditionConfig) -> ModularAdditionData:
    """The seeded train/test split of all p^2 pairs and their labels."""
    generator = torch.Generator().manual_seed(cfg.data_seed)
    pairs = all_pairs(cfg.p)
    labels = (pairs[:, 0] + pairs[:, 1]) % cfg.p
    if cfg.random_labels:
        labels = torch.randint(cfg.p, (len(pairs),), generator=generator)
    order = torch.randperm(len(pairs), generator=generator)
    n_train = int(cfg.train_fraction * len(pairs))
    if not 0 < n_train < len(pairs):
        raise ValueError(f"train_fraction={cfg.train_fraction} leaves an empty train or test set at p={cfg.p}")
    train, test = order[:n_train], order[n_train:]
    return ModularAdditionData(PairData(pairs[train], labels[train]), PairData(pairs[test], labels[test]))


def loss(model: nn.Module, batch: PairData) -> Float[Tensor, ""]:
    """Mean cross-entropy of the labels."""
    return F.cross_entropy(model(batch.pairs), batch.labels)


@torch.no_grad()
def metrics(model: nn.Module, data: PairData) -> dict[str, float]:
    """Loss and accuracy on a whole set."""
    logits = model(data.pairs)
    return {
        "loss": float(F.cross_entropy(logits, data.labels)),
        "accuracy": float((logits.argmax(-1) == data.labels).float().mean()),
    }
