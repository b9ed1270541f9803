"""The local learning coefficient by SGLD (Lau et al. 2023), every chain in one vectorised step.

Method. Around trained weights w*, C chains sample the localised tempered posterior

    p(w) ~ exp(-U(w)),   U(w) = nbeta L_n(w) + gamma/2 |w - w*|^2 + lambda/2 |w|^2

by stochastic-gradient Langevin dynamics on minibatches B_t (every chain sees the same batch):

    w_{t+1} = w_t - eps/2 grad U_B(w_t) + sqrt(eps) xi_t,   xi_t ~ N(0, I).

Chain c's estimate is lambda_c = nbeta * mean over kept steps t of [L_Bt(w_t) - L_Bt(w*)]: the
loss at w* is measured on the very batches the chains see, an unbiased estimate of L_n(w*)
whose batch noise cancels against the chains'. The first ``burn_in`` fraction of steps is left
out. The LLC is the mean over chains, with their standard deviation (ddof 1) and standard error.

Vectorisation: each chain's parameters are one flat vector, the chains a matrix w [chains, d];
one ``torch.func.vmap`` of ``grad_and_value`` computes every chain's loss and gradient in a
single batched forward and backward (the model sees its parameters as views of its row), and the
update, the potential and the diagnostic are a few whole-matrix operations. ``vectorize=False``
computes the same gradients chain by chain (the slow twin, for checking; same noise, same numbers).

Diagnostic: the MALA acceptance probability of the transition w_t -> w_{t+1} under U_Bt,

    alpha = min(1, exp(U(w_t) - U(w_{t+1}) + log q(w_t | w_{t+1}) - log q(w_{t+1} | w_t))),
    log q(w' | w) = -|w' - w + eps/2 grad U(w)|^2 / (2 eps),

both ends evaluated on the step's own batch B_t (so batch noise does not enter): every
``mala_every``-th step costs one more vmapped loss and gradient, at w_{t+1}. Around 0.9 means the
step size is reasonable; far lower, the discretisation of the dynamics is biting.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor
from torch.func import grad_and_value, vmap
from tqdm.auto import tqdm

from lm_saes.llc.config import NbetaRule, SGLDConfig

Params = dict[str, Tensor]  # name -> tensor, as ``named_parameters`` gives them
Batch = Any  # a tensor, a tuple of tensors (any pytree), or None for a data-free potential
LossFn = Callable[[Params, Batch], Tensor]  # one chain's parameters and a batch -> the mean loss (scalar)


class LLCEstimate(NamedTuple):
    """What ``estimate_llc`` found. Non-finite values mean a chain diverged (see ``diverged_chains``)."""

    llc_mean: float  # mean over chains of the per-chain estimates
    llc_std: float  # their standard deviation (ddof 1; NaN for one chain)
    llc_stderr: float  # llc_std / sqrt(chains)
    llc_per_chain: Float[Tensor, "chains"]
    loss_trace: Float[Tensor, "chains draws"]  # L_Bt(w_t), the loss each chain saw at every step
    init_loss_trace: Float[Tensor, "draws"]  # L_Bt(w*), the loss at w* on the same batches
    init_loss: float  # mean of init_loss_trace over the kept steps: the estimate of L_n(w*)
    mala_acceptance: Float[Tensor, "chains draws"]  # acceptance probability of step t (NaN where not measured)
    nbeta: float
    burn_in_steps: int
    diverged_chains: tuple[int, ...]  # chains whose loss became NaN or infinite
    seconds: float  # sampling wall time

    @property
    def draws_per_second(self) -> float:
        """SGLD steps of all chains together per second."""
        return self.loss_trace.numel() / self.seconds

    @property
    def mean_acceptance(self) -> float:
        """MALA acceptance averaged over the measured kept steps (NaN if none was measured)."""
        return float(self.mala_acceptance[:, self.burn_in_steps:].nanmean())


def default_nbeta(rule: float | NbetaRule, batch_size: int, n: int | None) -> float:
    """nbeta from its setting: 'batch' is m / ln m, 'dataset' n / ln n; a number is itself."""
    if not isinstance(rule, str):
        return float(rule)
    size = batch_size if rule == "batch" else n
    if size is None:
        raise ValueError("nbeta = 'dataset' needs the dataset size n; this loss has none, give a number")
    if size < 2:
        raise ValueError(f"nbeta = {rule!r} needs a size of at least 2, got {size}")
    return size / math.log(size)


# --- the parameters as one vector per chain ------------------------------------------------


class Layout(NamedTuple):
    """How a flat parameter vector [d] splits back into named tensors."""

    names: tuple[str, ...]
    shapes: tuple[torch.Size, ...]

    @classmethod
    def of(cls, params: Params) -> "Layout":
        return cls(tuple(params), tuple(v.shape for v in params.values()))

    def flatten(self, params: Params) -> Float[Tensor, "d"]:
        return torch.cat([params[k].detach().reshape(-1) for k in self.names])

    def unflatten(self, theta: Float[Tensor, "d"]) -> Params:
        sizes = [s.numel() for s in self.shapes]
        return {k: part.view(shape) for k, part, shape in zip(self.names, theta.split(sizes), self.shapes)}


def flat_loss(loss_fn: LossFn, layout: Layout) -> Callable[[Tensor, Batch], Tensor]:
    """The loss as a function of the flat parameter vector."""
    return lambda theta, batch: loss_fn(layout.unflatten(theta), batch)


# --- the maths, on the chains' parameter vectors w [chains, d] ------------------------------


def chain_gradients(
    loss: Callable[[Tensor, Batch], Tensor], w: Float[Tensor, "chains d"], batch: Batch, vectorize: bool = True
) -> tuple[Float[Tensor, "chains d"], Float[Tensor, "chains"]]:
    """Every chain's loss gradient and loss on ``batch``: one vmapped call, or (the slow twin) a loop."""
    if vectorize:
        return vmap(grad_and_value(loss), in_dims=(0, None))(w, batch)
    grads, losses = zip(*(grad_and_value(loss)(w_c, batch) for w_c in w))
    return torch.stack(grads), torch.stack(losses)


def potential_gradient(
    w: Float[Tensor, "chains d"], w_star: Float[Tensor, "d"], grads: Float[Tensor, "chains d"], nbeta: float,
    localization: float, weight_decay: float,
) -> Float[Tensor, "chains d"]:
    """grad U = nbeta grad L + gamma (w - w*) + lambda w."""
    return nbeta * grads + localization * (w - w_star) + weight_decay * w


def potential(
    losses: Float[Tensor, "chains"], w: Float[Tensor, "chains d"], w_star: Float[Tensor, "d"], nbeta: float,
    localization: float, weight_decay: float,
) -> Float[Tensor, "chains"]:
    """U = nbeta L + gamma/2 |w - w*|^2 + lambda/2 |w|^2."""
    return nbeta * losses + localization / 2 * (w - w_star).pow(2).sum(1) + weight_decay / 2 * w.pow(2).sum(1)


def mala_acceptance(
    u_from: Float[Tensor, "chains"], u_to: Float[Tensor, "chains"], w_from: Float[Tensor, "chains d"],
    w_to: Float[Tensor, "chains d"], grad_u_from: Float[Tensor, "chains d"], grad_u_to: Float[Tensor, "chains d"],
    step_size: float,
) -> Float[Tensor, "chains"]:
    """min(1, exp(U(w) - U(w') + log q(w | w') - log q(w' | w))) for the Langevin proposal q."""
    forward = (w_to - w_from + step_size / 2 * grad_u_from).pow(2).sum(1)
    backward = (w_from - w_to + step_size / 2 * grad_u_to).pow(2).sum(1)
    log_ratio = u_from - u_to + (forward - backward) / (2 * step_size)
    return torch.exp(torch.clamp(log_ratio, max=0.0))


def sgld_update(
    w: Float[Tensor, "chains d"], grad_u: Float[Tensor, "chains d"], noise: Float[Tensor, "chains d"],
    step_size: float,
) -> Float[Tensor, "chains d"]:
    """w - eps/2 grad U + sqrt(eps) xi."""
    return w - step_size / 2 * grad_u + math.sqrt(step_size) * noise


def project_out(
    w: Float[Tensor, "chains d"], w_star: Float[Tensor, "d"], direction: Float[Tensor, "d"]
) -> Float[Tensor, "chains d"]:
    """Remove from each chain's displacement w - w* its component along the unit ``direction``."""
    along = (w - w_star) @ direction  # [chains]
    return w - along[:, None] * direction


def llc_per_chain(
    loss_trace: Float[Tensor, "chains draws"], init_loss_trace: Float[Tensor, "draws"], nbeta: float,
    burn_in_steps: int,
) -> Float[Tensor, "chains"]:
    """nbeta * mean over kept steps of (L_Bt(w_t) - L_Bt(w*))."""
    kept = loss_trace[:, burn_in_steps:] - init_loss_trace[burn_in_steps:]
    return nbeta * kept.mean(1)


def unit_gradient(
    loss: Callable[[Tensor, Batch], Tensor], w_star: Float[Tensor, "d"], batches: list[Batch]
) -> Float[Tensor, "d"]:
    """The loss gradient at w*, averaged over ``batches`` and scaled to unit norm."""
    total = sum(grad_and_value(loss)(w_star, batch)[0] for batch in batches)
    norm = float(total.norm())
    if norm == 0:
        raise ValueError("the loss gradient at w* is zero: there is no direction to restrict to")
    return total / norm


# --- the sampler ----------------------------------------------------------------------------


def estimate_llc(
    loss_fn: LossFn, params: Params, batches: Iterator[Batch], cfg: SGLDConfig, nbeta: float,
    progress: bool = False, desc: str = "llc",
) -> LLCEstimate:
    """Run ``cfg.chains`` SGLD chains around ``params`` (w*) for ``cfg.draws`` steps; see the module docstring.

    ``loss_fn(params, batch)`` is the mean loss of one set of parameters on a batch; it must be a
    function torch.func can transform (no in-place updates of its inputs, no ``.item()``).
    ``batches`` yields one batch per step (endless). The SGLD noise comes from ``cfg.seed``.
    """
    layout = Layout.of(params)
    loss = flat_loss(loss_fn, layout)
    w_star = layout.flatten(params)  # [d]
    device = w_star.device
    generator = torch.Generator(device).manual_seed(cfg.seed)
    direction = None
    if cfg.restrict_to_orthogonal_gradient:
        direction = unit_gradient(loss, w_star, [next(batches) for _ in range(cfg.reference_batches)])
    C, T = cfg.chains, cfg.draws
    w = w_star.repeat(C, 1)  # [chains, d]
    loss_trace = torch.full((C, T), float("nan"), device=device)
    init_trace = torch.full((T,), float("nan"), device=device)
    acceptance = torch.full((C, T), float("nan"), device=device)
    coefficients = (nbeta, cfg.localization, cfg.weight_decay)
    start = time.perf_counter()
    bar = tqdm(range(T), desc=desc, unit="step", disable=not progress, dynamic_ncols=True, leave=False)
    for t in bar:
        batch = next(batches)
        grads, losses = chain_gradients(loss, w, batch, cfg.vectorize)
        with torch.no_grad():
            init_trace[t] = loss(w_star, batch)
            loss_trace[:, t] = losses
            if not torch.isfinite(losses).any():
                break  # every chain has diverged: the rest of the trace stays NaN
            grad_u = potential_gradient(w, w_star, grads, *coefficients)
            noise = torch.randn(w.shape, generator=generator, device=device, dtype=w.dtype)
            proposal = sgld_update(w, grad_u, noise, cfg.step_size)
            if direction is not None:
                proposal = project_out(proposal, w_star, direction)
        if cfg.mala_every and t % cfg.mala_every == 0:
            grads_to, losses_to = chain_gradients(loss, proposal, batch, cfg.vectorize)  # same batch
            with torch.no_grad():
                acceptance[:, t] = mala_acceptance(
                    potential(losses, w, w_star, *coefficients), potential(losses_to, proposal, w_star, *coefficients),
                    w, proposal, grad_u, potential_gradient(proposal, w_star, grads_to, *coefficients), cfg.step_size,
                )
        w = proposal
        if progress and (t % 50 == 0 or t == T - 1):
            bar.set_postfix(loss=f"{float(losses.mean()):.4g}", at_w_star=f"{float(init_trace[t]):.4g}")
    bar.close()
    seconds = time.perf_counter() - start
    return summarize(loss_trace.cpu(), init_trace.cpu(), acceptance.cpu(), nbeta, cfg.burn_in_steps, seconds)


def summarize(
    loss_trace: Tensor, init_trace: Tensor, acceptance: Tensor, nbeta: float, burn_in_steps: int, seconds: float
) -> LLCEstimate:
    """The estimate from the traces (per-chain values, mean, spread, divergence)."""
    per_chain = llc_per_chain(loss_trace, init_trace, nbeta, burn_in_steps)
    chains = len(per_chain)
    std = float(per_chain.std()) if chains > 1 else float("nan")
    diverged = tuple(int(c) for c in (~torch.isfinite(loss_trace).all(1)).nonzero().flatten())
    return LLCEstimate(
        llc_mean=float(per_chain.mean()), llc_std=std, llc_stderr=std / math.sqrt(chains),
        llc_per_chain=per_chain, loss_trace=loss_trace, init_loss_trace=init_trace,
        init_loss=float(init_trace[burn_in_steps:].mean()), mala_acceptance=acceptance, nbeta=nbeta,
        burn_in_steps=burn_in_steps, diverged_chains=diverged, seconds=seconds,
    )
