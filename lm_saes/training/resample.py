"""Resampling dead features ("Towards Monosemanticity", Bricken et al. 2023; as dictionary_learning
does it every ``resample_every`` steps):

    losses_j   = ||y_j - recon_j||                      per input of the current batch
    picked     ~ min(n_dead, batch) inputs without replacement, P(j) proportional to losses_j
    for each dead feature i, with its picked input (x_j, y_j):
        W_enc[:, i] = 0.2 * mean_{alive a} ||W_enc[:, a]|| * x_j / ||x_j||
        W_dec[i]    = y_j / ||y_j||
        b_enc[i]    = 0
        Adam's moments of those entries = 0; the feature counts as just fired

(dictionary_learning scales the raw input rather than its direction; the paper normalises it,
which keeps the new encoder column's norm at a fifth of the alive ones' whatever the input norm.)
An SAE has y = x; a transcoder reads from x and writes towards y.
"""

from __future__ import annotations

import torch
from jaxtyping import Bool, Float
from torch import Tensor

from lm_saes.dictionaries import Dictionary

ENCODER_SCALE = 0.2


@torch.no_grad()
def resample_dead(
    dictionary: Dictionary, optimizer: torch.optim.Optimizer, dead: Bool[Tensor, "d_sae"],
    x: Float[Tensor, "batch d_in"], y: Float[Tensor, "batch d_out"], generator: torch.Generator,
) -> Tensor:
    """Re-initialise (up to a batch of) the dead features from poorly reconstructed inputs; the
    indices of the features resampled."""
    n = min(int(dead.sum()), len(x))
    if n == 0:
        return dead.nonzero().squeeze(1)[:0]
    losses = (y - dictionary(x).recon).norm(dim=-1)  # [batch]
    if float(losses.sum()) == 0:
        losses = torch.ones_like(losses)
    picked = torch.multinomial(losses, n, replacement=False, generator=generator)  # [n]
    features = dead.nonzero().squeeze(1)[:n]  # [n], the first n dead features
    enc_norms = dictionary.W_enc.norm(dim=0)  # [d_sae]
    alive_norm = enc_norms[~dead].mean() if bool((~dead).any()) else enc_norms.new_tensor(1.0)
    xs, ys = x[picked], y[picked]  # [n, d_in], [n, d_out]
    dictionary.W_enc[:, features] = (ENCODER_SCALE * alive_norm * xs / xs.norm(dim=1, keepdim=True)).T
    dictionary.W_dec[features] = ys / ys.norm(dim=1, keepdim=True)
    dictionary.b_enc[features] = 0.0
    for param, dim in ((dictionary.W_enc, 1), (dictionary.b_enc, 0), (dictionary.W_dec, 0)):
        for moment in ("exp_avg", "exp_avg_sq"):
            state = optimizer.state.get(param, {})
            if moment in state:
                state[moment].index_fill_(dim, features, 0.0)
    return features
