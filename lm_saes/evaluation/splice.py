"""Downstream loss of a dictionary: splice its reconstruction into the model's forward.

Three forwards of the model over the same tokens:

- clean: the model as it is;
- spliced: the activation at ``hook_out`` is replaced by the dictionary's reconstruction. For an
  SAE ``hook_out = hook_in`` and the reconstruction is of that same activation; for a transcoder
  it is computed from the activation at ``hook_in``, which must fire earlier in the forward;
- zero: the activation at ``hook_out`` is replaced by zeros (the zero-ablation baseline).

Each is scored by next-token cross-entropy; the spliced model also by KL(clean || spliced). Both
average over the same predicted positions (``metrics.predicted_positions``). The dictionary is
used as it is: put it in eval mode first (``Dictionary.from_pretrained`` returns it so), since
BatchTopK picks features across the batch while training.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Callable, NamedTuple

import torch
from jaxtyping import Bool, Float, Int
from torch import Tensor

from lm_saes.errors import ConfigError, ModelError
from lm_saes.evaluation.metrics import ce_loss_recovered, kl_divergence, next_token_ce, predicted_positions
from lm_saes.models.backend import LanguageModel

if TYPE_CHECKING:
    from lm_saes.dictionaries.base import Dictionary

Hook = tuple[str, Callable]


class SplicedLosses(NamedTuple):
    ce_clean: float  # cross-entropy of the unmodified model
    ce_spliced: float  # ... with the reconstruction spliced in at hook_out
    ce_zero: float  # ... with hook_out zero-ablated
    kl_spliced: float  # mean KL(clean || spliced) of the next-token distributions
    ce_loss_recovered: float  # (ce_zero - ce_spliced) / (ce_zero - ce_clean)


def spliced_losses(
    lm: LanguageModel,
    dictionary: "Dictionary",
    tokens: Int[Tensor, "batch ctx"],
    hook_in: str,
    hook_out: str | None = None,
    mask: Bool[Tensor, "batch ctx"] | None = None,
) -> SplicedLosses:
    """Clean, spliced and zero-ablated losses of ``lm`` on ``tokens`` (positions whose next token
    has ``mask`` false are not scored)."""
    return spliced_losses_many(lm, {"": dictionary}, tokens, hook_in, hook_out, mask)[""]


def spliced_losses_many(
    lm: LanguageModel,
    dictionaries: Mapping[str, "Dictionary"],
    tokens: Int[Tensor, "batch ctx"],
    hook_in: str,
    hook_out: str | None = None,
    mask: Bool[Tensor, "batch ctx"] | None = None,
) -> dict[str, SplicedLosses]:
    """``spliced_losses`` of several dictionaries on the same tokens: the clean and zero-ablated
    forwards run once, the spliced one once per dictionary."""
    if hook_out is None:
        transcoders = [name for name, d in dictionaries.items() if d.transcoder]
        if transcoders:
            raise ConfigError(
                f"a transcoder reads {hook_in!r} but needs hook_out: the activation it rebuilds"
            )
        hook_out = hook_in
    lm.check_hooks([hook_in, hook_out])
    clean = lm.logits(tokens)
    zero = lm.logits(tokens, [(hook_out, lambda act, hook: torch.zeros_like(act))])
    ce_clean, ce_zero = (float(next_token_ce(logits, tokens, mask)) for logits in (clean, zero))
    keep = predicted_positions(tokens, mask).to(clean.device)
    clean_scored = clean[:, :-1][keep]  # [scored positions, vocab], shared by every dictionary
    results = {}
    for name, dictionary in dictionaries.items():
        spliced = lm.logits(tokens, splice_hooks(dictionary, hook_in, hook_out))
        ce_spliced = float(next_token_ce(spliced, tokens, mask))
        kl = float(kl_divergence(clean_scored, spliced[:, :-1][keep]))
        results[name] = SplicedLosses(ce_clean, ce_spliced, ce_zero, kl_spliced=kl,
                                      ce_loss_recovered=ce_loss_recovered(ce_clean, ce_spliced, ce_zero))
    return results


def splice_hooks(dictionary: "Dictionary", hook_in: str, hook_out: str) -> list[Hook]:
    """transformer_lens hooks that replace ``hook_out`` by the reconstruction from ``hook_in``."""
    if hook_in == hook_out:
        return [(hook_in, lambda act, hook: reconstruct(dictionary, act))]
    seen: dict[str, Tensor] = {}

    def read(act: Tensor, hook) -> None:
        seen["x"] = act

    def write(act: Tensor, hook) -> Tensor:
        if "x" not in seen:
            raise ModelError(f"hook_in {hook_in!r} must fire before hook_out {hook_out!r} in the forward")
        return reconstruct(dictionary, seen["x"])

    return [(hook_in, read), (hook_out, write)]


def reconstruct(
    dictionary: "Dictionary", act: Float[Tensor, "*tokens d_in"]
) -> Float[Tensor, "*tokens d_out"]:
    """The dictionary's reconstruction from activations ``act``, in ``act``'s dtype and device."""
    if act.shape[-1] != dictionary.d_in:
        raise ModelError(f"the dictionary reads d_in={dictionary.d_in} but the hook gives d={act.shape[-1]}")
    weight = dictionary.W_dec
    x = act.reshape(-1, act.shape[-1]).to(device=weight.device, dtype=weight.dtype)
    recon = dictionary(x).recon
    return recon.reshape(*act.shape[:-1], recon.shape[-1]).to(device=act.device, dtype=act.dtype)
