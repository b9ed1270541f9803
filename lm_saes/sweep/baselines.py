"""Baselines for the sweep: classical bases read at the same L0 budgets as the sparse dictionaries.

A basis is a mean mu [d], n unit-norm directions D [n, d] (rows) and an encoder E [d, n] with

    codes c = (x - mu) @ E            [tokens, n]
    x ~ mu + c @ D                    (exact when all n codes are kept)

A baseline at budget k keeps, per token, the k codes of largest |c_i| and reconstructs
mu + sum_i c_i D_i over them (Cunningham et al. 2023, "Sparse autoencoders find highly
interpretable features in language models", compare against such bases).

To be measured with exactly the metrics of a trained dictionary, a baseline *is* a TopK
dictionary with d_sae = 2n and the signed copies of every direction:

    W_enc = [E, -E]   [d, 2n]        b_enc = 0
    W_dec = [D; -D]   [2n, d]        b_dec = mu

The dictionary's pre-activations (x - b_dec) W_enc + b_enc are [c, -c]; for each i one of c_i, -c_i
equals |c_i| >= 0, so the k largest entries are the k largest |c_i| (k <= n), and after the ReLU
they decode to sign(c_i) |c_i| D_i = c_i D_i. The L0 is then k per token, as for a TopK SAE.

The five bases (all centred on the data mean):

    pca      eigenvectors of the covariance, by decreasing variance; E = D^T
    ica      FastICA's mixing columns (unit-variance sources), normalised; E = the unmixing
             matrix with each direction's norm folded into its code
    nmf      the parts of a non-negative factorization of the activations' positive and negative
             halves, [relu(x - mu), relu(mu - x)] ~ W H with d parts; part i's direction is
             H_i[:d] - H_i[d:], normalised; E = D^-1 (so all d codes rebuild x exactly)
    neurons  the standard basis (each residual-stream coordinate is a feature); E = D = I
    random   a random orthonormal basis (QR of a seeded Gaussian matrix); E = D^T
"""

from __future__ import annotations

import warnings
from typing import Callable, NamedTuple

import torch
from jaxtyping import Float
from sklearn.decomposition import NMF, FastICA
from sklearn.exceptions import ConvergenceWarning
from torch import Tensor

from lm_saes.config import TopKConfig
from lm_saes.dictionaries.topk import TopKDictionary
from lm_saes.errors import ConfigError, LmSaesError

BASELINES = ("pca", "ica", "nmf", "neurons", "random")

# FastICA's iteration cap and tolerance (sklearn's defaults, named). An iteration costs O(tokens d^2):
# about 0.5 s for 20k tokens at d = 128 on 2 CPU cores, so the cap bounds a non-converging fit.
ICA_MAX_ITER = 200
ICA_TOL = 1e-4
ICA_MIN_VARIANCE_RATIO = 1e-12  # smallest / largest covariance eigenvalue that ICA can still whiten
# NMF's multiplicative updates (each O(tokens d^2), like an ICA iteration) and their tolerance.
NMF_MAX_ITER = 200
NMF_TOL = 1e-4
# NMF's parts are not orthogonal: codes read in float32 lose about condition x 6e-8 of the signal.
NMF_MAX_CONDITION = 1e5
RECONSTRUCTION_RTOL = 1e-6  # a fitted basis must rebuild its data to this relative error (float64)


class Basis(NamedTuple):
    """A basis fitted to activations, in float64 on the CPU."""

    mean: Float[Tensor, "d"]  # the data mean, the baseline's b_dec
    directions: Float[Tensor, "n d"]  # unit-norm rows, the decoder directions
    encoder: Float[Tensor, "d n"]  # codes = (x - mean) @ encoder; x ~ mean + codes @ directions


# --- the four bases ---------------------------------------------------------------------------


def pca_basis(acts: Float[Tensor, "tokens d"], seed: int = 0) -> Basis:
    """Eigenvectors of the covariance by decreasing eigenvalue, each signed so that its largest
    component is positive (eigh's signs are arbitrary). ``seed`` is unused: PCA is deterministic."""
    mean = acts.mean(0)  # [d]
    centred = acts - mean  # [tokens, d]
    covariance = centred.T @ centred / (acts.shape[0] - 1)  # [d, d]
    _, vectors = torch.linalg.eigh(covariance)  # columns, by increasing eigenvalue
    directions = vectors.flip(1).T  # [d, d]: rows, by decreasing eigenvalue
    largest = directions.gather(1, directions.abs().argmax(1, keepdim=True))  # [d, 1]
    directions = directions * largest.sign()
    return Basis(mean=mean, directions=directions, encoder=directions.T)


def ica_basis(acts: Float[Tensor, "tokens d"], seed: int = 0) -> Basis:
    """FastICA with d unit-variance sources s: x ~ mean + s @ mixing_^T and s = (x - mean) @
    components_^T. Direction i is mixing column i normalised; its norm moves into the code, so
    c_i = ||A_i|| s_i. Directions are ordered by that norm (the variance each source explains)."""
    d = acts.shape[1]
    variances = torch.linalg.eigvalsh(torch.cov(acts.T))  # [d], increasing
    if variances[0] <= ICA_MIN_VARIANCE_RATIO * variances[-1]:
        raise LmSaesError(
            f"the ica baseline cannot whiten these activations: their covariance is singular (smallest "
            f"eigenvalue {float(variances[0]):.2g}, largest {float(variances[-1]):.2g}), e.g. a constant "
            "dimension. Leave ica out of the baselines for this hook."
        )
    ica = FastICA(n_components=d, whiten="unit-variance", random_state=seed, max_iter=ICA_MAX_ITER, tol=ICA_TOL)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # reported below, with what it means here
        ica.fit(acts.numpy())
    if ica.n_iter_ >= ICA_MAX_ITER:
        warnings.warn(
            f"the ICA baseline's FastICA did not converge in {ICA_MAX_ITER} iterations (tol={ICA_TOL}): "
            "its directions are less independent than they could be, but it still reconstructs exactly "
            "at full budget. Near-Gaussian activations have no independent directions to find; otherwise "
            "fitting on more tokens helps.",
            stacklevel=3,
        )
    mixing = torch.from_numpy(ica.mixing_.T)  # [n, d]: row i is source i's direction, unnormalised
    unmixing = torch.from_numpy(ica.components_.T)  # [d, n]: sources = (x - mean) @ unmixing
    norms = mixing.norm(dim=1)  # [n]
    order = norms.argsort(descending=True)
    return Basis(
        mean=torch.from_numpy(ica.mean_),
        directions=(mixing / norms[:, None])[order],
        encoder=(unmixing * norms[None, :])[:, order],
    )


def nmf_basis(acts: Float[Tensor, "tokens d"], seed: int = 0) -> Basis:
    """Non-negative parts of the centred activations (see the module docstring): sklearn's NMF
    (multiplicative updates, NNDSVDa start seeded by ``seed``) of their positive and negative
    halves [tokens, 2d] with d parts. Directions are ordered by their norm before normalising
    (the activation a part carries per unit of its code); the encoder inverts them."""
    d = acts.shape[1]
    mean = acts.mean(0)  # [d]
    centred = acts - mean  # [tokens, d]
    halves = torch.cat([centred.clamp_min(0), (-centred).clamp_min(0)], dim=1)  # [tokens, 2d], >= 0
    nmf = NMF(n_components=d, init="nndsvda", solver="mu", max_iter=NMF_MAX_ITER, tol=NMF_TOL, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # an unconverged fit is still a basis
        nmf.fit(halves.numpy())
    parts = torch.from_numpy(nmf.components_)  # [d, 2d]
    raw = parts[:, :d] - parts[:, d:]  # [d, d]: each part as a direction in activation space
    norms = raw.norm(dim=1)  # [d]
    if not bool((norms > 0).all()):
        raise LmSaesError(
            f"the nmf baseline found {int((norms == 0).sum())} empty parts of {d}: these activations have fewer "
            "non-negative parts than dimensions. Fit on more tokens, or leave nmf out."
        )
    order = norms.argsort(descending=True)
    directions = (raw / norms[:, None])[order]  # [d, d], unit rows
    condition = float(torch.linalg.cond(directions))
    if not condition <= NMF_MAX_CONDITION:  # also NaN / inf: dependent parts
        raise LmSaesError(
            f"the nmf baseline's parts are nearly linearly dependent (condition number {condition:.3g} > "
            f"{NMF_MAX_CONDITION:g}), so they read the activations badly; fit on more tokens or leave nmf out"
        )
    return Basis(mean=mean, directions=directions, encoder=torch.linalg.inv(directions))  # codes @ D = x - mean


def neuron_basis(acts: Float[Tensor, "tokens d"], seed: int = 0) -> Basis:
    """The standard basis: feature i is coordinate i of the (centred) activation."""
    identity = torch.eye(acts.shape[1], dtype=acts.dtype)  # [d, d]
    return Basis(mean=acts.mean(0), directions=identity, encoder=identity)


def random_basis(acts: Float[Tensor, "tokens d"], seed: int = 0) -> Basis:
    """A Haar-random orthonormal basis: Q of the QR of a seeded Gaussian matrix, its columns'
    signs fixed by diag(R) (which makes Q uniformly distributed)."""
    d = acts.shape[1]
    gaussian = torch.randn(d, d, generator=torch.Generator().manual_seed(seed), dtype=acts.dtype)
    q, r = torch.linalg.qr(gaussian)  # [d, d] each
    directions = (q * r.diagonal().sign()).T  # [d, d]: rows are Q's columns
    return Basis(mean=acts.mean(0), directions=directions, encoder=directions.T)


FITTERS: dict[str, Callable[[Tensor, int], Basis]] = {
    "pca": pca_basis, "ica": ica_basis, "nmf": nmf_basis, "neurons": neuron_basis, "random": random_basis,
}
assert tuple(FITTERS) == BASELINES


# --- fitting and the dictionary ---------------------------------------------------------------


def full_reconstruction_error(basis: Basis, acts: Float[Tensor, "tokens d"]) -> float:
    """||x - (mean + codes @ directions)|| / ||x - mean|| over all tokens, every code kept."""
    centred = acts - basis.mean  # [tokens, d]
    recon = centred @ basis.encoder @ basis.directions  # [tokens, d]
    return float((recon - centred).norm() / centred.norm().clamp_min(torch.finfo(acts.dtype).tiny))


def fit_basis(method: str, acts: Float[Tensor, "tokens d"], seed: int = 0) -> Basis:
    """Fit one of BASELINES to activations (computed in float64 on the CPU)."""
    if method not in FITTERS:
        raise ConfigError(f"unknown baseline {method!r}: choose from {', '.join(BASELINES)}")
    if acts.ndim != 2 or acts.shape[0] <= acts.shape[1]:
        raise ConfigError(
            f"fitting the {method} baseline needs a [tokens, d] matrix with more tokens than d, "
            f"got shape {tuple(acts.shape)}: give the baselines more tokens"
        )
    acts = acts.detach().to("cpu", torch.float64)
    basis = FITTERS[method](acts, seed)
    error = full_reconstruction_error(basis, acts)
    if not error <= RECONSTRUCTION_RTOL:  # also catches NaN
        raise LmSaesError(
            f"the {method} baseline does not rebuild its activations with every direction kept "
            f"(relative error {error:.2g}); the fit is numerically unstable on these activations"
        )
    return basis


def signed_weights(basis: Basis) -> dict[str, Tensor]:
    """The TopK dictionary's state: every direction twice, with opposite signs (d_sae = 2n)."""
    n = basis.directions.shape[0]
    return {
        "W_enc": torch.cat([basis.encoder, -basis.encoder], dim=1),  # [d, 2n]
        "b_enc": torch.zeros(2 * n, dtype=basis.mean.dtype),  # [2n]
        "W_dec": torch.cat([basis.directions, -basis.directions], dim=0),  # [2n, d]
        "b_dec": basis.mean,  # [d]
        "input_scale": torch.tensor(1.0),
        "output_scale": torch.tensor(1.0),
    }


def baseline_dictionary(basis: Basis, k: int, device: str | torch.device = "cpu") -> TopKDictionary:
    """The basis read at L0 budget k, as a float32 TopK dictionary in eval mode on ``device``."""
    n, d = basis.directions.shape
    if not 1 <= k <= n:
        raise ConfigError(f"a baseline's L0 budget must be between 1 and its {n} directions, got k={k}")
    norms = basis.directions.norm(dim=1)
    if not torch.allclose(norms, torch.ones_like(norms), atol=1e-6):
        raise ValueError("a Basis must have unit-norm directions (fold their norms into the encoder)")
    dictionary = TopKDictionary(TopKConfig(d_sae=2 * n, k=k), d_in=d, d_out=d)
    state = {name: value.to(torch.float32) for name, value in signed_weights(basis).items()}
    dictionary.load_state_dict(state)
    return dictionary.to(device).eval()
