"""The SGLD estimator against models whose learning coefficient is known in closed form, the MALA
diagnostic against its exact expectation, and the vectorised chains against their slow twin."""

import itertools
import math

import numpy as np
import pytest
import torch

from lm_saes.llc.config import SGLDConfig
from lm_saes.llc.estimator import (
    default_nbeta, estimate_llc, llc_per_chain, mala_acceptance, potential, potential_gradient, project_out,
)

NO_DATA = itertools.repeat(None)  # a potential needs no batches
N = 1000
NBETA = N / math.log(N)  # n / ln n at n = 1000


def sgld(**changes) -> SGLDConfig:
    return SGLDConfig(**{"step_size": 1e-4, "localization": 1.0, "chains": 200, "draws": 2000, "burn_in": 0.25,
                         "nbeta": NBETA, "mala_every": 50, **changes})


def estimate(loss, params, cfg: SGLDConfig):
    return estimate_llc(loss, params, NO_DATA, cfg, float(cfg.nbeta))


# --- closed forms ---------------------------------------------------------------------------

POTENTIALS = {  # K(w), dimension, lambda = min_i 1/(2 k_i) (normal crossing) or d/2 (regular)
    "w^2": (lambda w: w.pow(2).sum(), 1, 0.5, {}),
    "w^4": (lambda w: w.pow(4).sum(), 1, 0.25, {"step_size": 1e-3}),
    "|w|^2 in 2d": (lambda w: w.pow(2).sum(), 2, 1.0, {}),
    "|w|^2 in 12d": (lambda w: w.pow(2).sum(), 12, 6.0, {}),
}


@pytest.mark.parametrize("name", list(POTENTIALS))
def test_normal_crossing_potentials_give_their_learning_coefficient(name):
    potential_of, dim, exact, changes = POTENTIALS[name]
    result = estimate(lambda p, _: potential_of(p["w"]), {"w": torch.zeros(dim)}, sgld(**changes))
    assert abs(result.llc_mean - exact) < 4 * result.llc_stderr, (result.llc_mean, result.llc_stderr)
    assert result.llc_stderr < 0.03 * exact  # precise enough to tell the cases apart
    assert result.mean_acceptance > 0.95 and not result.diverged_chains


def aoyagi(M: int, N: int, H: int, r: int) -> float:
    """The learning coefficient of reduced-rank regression (Aoyagi and Watanabe 2005): inputs M,
    outputs N, model rank H, true rank r."""
    if N + r <= M + H and M + r <= N + H and H + r <= M + N:
        odd = (M + N + H + r) % 2
        return (2 * (H + r) * (M + N) - (M - N) ** 2 - (H + r) ** 2 + odd) / 8
    if M + H < N + r:
        return (H * M - H * r + N * r) / 2
    if N + H < M + r:
        return (H * N - H * r + M * r) / 2
    return M * N / 2


def test_aoyagi_formula_on_cases_worked_by_hand():
    assert aoyagi(1, 1, 1, 0) == 0.5  # K = (ab)^2: lambda 1/2
    assert aoyagi(3, 3, 3, 3) == 4.5  # full rank: regular, d/2 = 9/2
    assert aoyagi(4, 4, 2, 2) == 6.0  # rank-2 4x4 matrices: dimension 2 * 4 * 2 - 4 = 12, half of it
    assert aoyagi(6, 2, 2, 1) == 4.0 and aoyagi(2, 6, 2, 1) == 4.0  # N + H < M + r, and its mirror
    assert aoyagi(1, 1, 5, 0) == 0.5  # M + N < H + r: MN / 2


@pytest.mark.slow
@pytest.mark.parametrize("M,N,H,r", [(3, 3, 3, 1), (6, 2, 2, 1)])
def test_reduced_rank_regression_matches_aoyagi_within_ten_percent(M, N, H, r):
    """y = W2 W1 x with x ~ N(0, I) and unit noise: the population loss (1/2)||W2 W1 - A||_F^2 at the
    true factors W1 = W2 = the first r coordinate directions, A of rank r."""
    A = torch.zeros(N, M)
    W1, W2 = torch.zeros(H, M), torch.zeros(N, H)
    for i in range(r):
        A[i, i] = W1[i, i] = W2[i, i] = 1.0
    n = 10_000
    cfg = sgld(nbeta=n / math.log(n), chains=50, draws=2000, mala_every=100)
    result = estimate(lambda p, _: 0.5 * (p["W2"] @ p["W1"] - A).pow(2).sum(), {"W1": W1, "W2": W2}, cfg)
    assert abs(result.llc_mean / aoyagi(M, N, H, r) - 1) < 0.10, result.llc_mean


# --- the MALA diagnostic ----------------------------------------------------------------------


def test_mala_acceptance_of_one_transition_by_hand():
    w, w_to = torch.tensor([[0.3]]), torch.tensor([[0.1]])
    a, eps = 4.0, 0.05  # U(w) = a/2 w^2
    u = lambda x: a / 2 * x.pow(2).sum(1)
    grad = lambda x: a * x
    log_ratio = (a / 2 * 0.09 - a / 2 * 0.01
                 + ((0.1 - 0.3 + eps / 2 * a * 0.3) ** 2 - (0.3 - 0.1 + eps / 2 * a * 0.1) ** 2) / (2 * eps))
    got = mala_acceptance(u(w), u(w_to), w, w_to, grad(w), grad(w_to), eps)
    assert float(got) == pytest.approx(min(1.0, math.exp(log_ratio)), rel=1e-5)
    back = mala_acceptance(u(w_to), u(w), w_to, w, grad(w_to), grad(w), eps)  # the reverse move: the inverse ratio
    assert float(back) == pytest.approx(min(1.0, math.exp(-log_ratio)), rel=1e-5) and float(got * back) < 1


def test_mala_acceptance_on_a_gaussian_matches_its_exact_expectation():
    """U = nbeta w^2 (a = 2 nbeta): SGLD's stationary law is N(0, 1 / (a (1 - eps a / 4))); the mean
    acceptance of its proposals is a 2-d Gaussian integral, computed here by quadrature."""
    nbeta, eps_a = 100.0, 1.5
    a = 2 * nbeta
    eps = eps_a / a
    nodes, weights = np.polynomial.hermite_e.hermegauss(120)
    weights = np.outer(weights, weights) / weights.sum() ** 2
    w, xi = np.meshgrid(nodes * math.sqrt(1 / (a * (1 - eps_a / 4))), nodes, indexing="ij")
    w_to = (1 - eps_a / 2) * w + math.sqrt(eps) * xi
    forward, backward = (w_to - w + eps / 2 * a * w) ** 2, (w - w_to + eps / 2 * a * w_to) ** 2
    log_ratio = a / 2 * (w**2 - w_to**2) + (forward - backward) / (2 * eps)
    exact = float((weights * np.minimum(1.0, np.exp(log_ratio))).sum())
    cfg = sgld(step_size=eps, localization=0.0, nbeta=nbeta, chains=400, draws=400, mala_every=1)
    quadratic = lambda p, _: p["w"].pow(2).sum()
    result = estimate(quadratic, {"w": torch.zeros(1)}, cfg)
    assert 0.8 < exact < 0.95
    assert result.mean_acceptance == pytest.approx(exact, abs=0.01)
    smaller = estimate(quadratic, {"w": torch.zeros(1)}, cfg.model_copy(update={"step_size": eps / 10}))
    assert smaller.mean_acceptance > result.mean_acceptance  # smaller steps, closer to exact sampling


# --- the sampler's mechanics --------------------------------------------------------------------


def two_layer_loss(p, batch):
    x, y = batch
    return (torch.tanh(x @ p["W1"]) @ p["W2"] - y).pow(2).mean()


def regression_batches(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    while True:
        x = torch.randn(32, 3, generator=generator)
        yield x, torch.sin(x[:, :1])


def test_vectorised_chains_equal_the_chain_by_chain_twin():
    params = {"W1": torch.randn(3, 5, generator=torch.Generator().manual_seed(1)), "W2": torch.zeros(5, 1)}
    cfg = SGLDConfig(chains=4, draws=30, step_size=1e-3, localization=10.0, nbeta=30.0, mala_every=3,
                     restrict_to_orthogonal_gradient=True, weight_decay=0.1)
    fast = estimate_llc(two_layer_loss, params, regression_batches(), cfg, 30.0)
    slow = estimate_llc(two_layer_loss, params, regression_batches(), cfg.model_copy(update={"vectorize": False}), 30.0)
    torch.testing.assert_close(fast.loss_trace, slow.loss_trace, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(fast.mala_acceptance, slow.mala_acceptance, rtol=1e-4, atol=1e-5, equal_nan=True)
    assert fast.llc_mean == pytest.approx(slow.llc_mean, rel=1e-4)


def test_a_seed_reproduces_an_estimate_and_another_seed_does_not():
    params = {"W1": torch.randn(3, 5, generator=torch.Generator().manual_seed(1)), "W2": torch.zeros(5, 1)}
    cfg = SGLDConfig(chains=3, draws=20, nbeta=30.0)
    first = estimate_llc(two_layer_loss, params, regression_batches(), cfg, 30.0)
    again = estimate_llc(two_layer_loss, params, regression_batches(), cfg, 30.0)
    other = estimate_llc(two_layer_loss, params, regression_batches(), cfg.model_copy(update={"seed": 1}), 30.0)
    assert torch.equal(first.loss_trace, again.loss_trace)
    assert not torch.equal(first.loss_trace, other.loss_trace)
    assert len(set(first.llc_per_chain.tolist())) == 3  # the chains differ from one another


def test_the_estimate_is_nbeta_times_the_mean_loss_increase_after_burn_in():
    trace = torch.tensor([[1.0, 2.0, 3.0, 5.0], [1.0, 1.0, 1.0, 1.0]])
    at_w_star = torch.tensor([1.0, 1.0, 1.0, 2.0])
    assert llc_per_chain(trace, at_w_star, nbeta=10.0, burn_in_steps=2).tolist() == [25.0, -5.0]


def test_restricting_to_the_orthogonal_gradient_keeps_the_loss_along_it_fixed():
    """L(w) = c . w: every displacement orthogonal to c = grad L leaves the loss at L(w*)."""
    c = torch.tensor([1.0, -2.0, 0.5])
    loss = lambda p, _: p["w"] @ c
    cfg = SGLDConfig(chains=5, draws=50, nbeta=10.0, step_size=1e-2, restrict_to_orthogonal_gradient=True,
                     reference_batches=1)
    restricted = estimate(loss, {"w": torch.ones(3)}, cfg)
    torch.testing.assert_close(restricted.loss_trace, torch.full((5, 50), float(c.sum())), atol=1e-5, rtol=0)
    free = estimate(loss, {"w": torch.ones(3)}, cfg.model_copy(update={"restrict_to_orthogonal_gradient": False}))
    assert (free.loss_trace[:, 1:] - float(c.sum())).abs().max() > 0.1
    direction = c / c.norm()
    w = torch.randn(4, 3)
    assert ((project_out(w, torch.ones(3), direction) - torch.ones(3)) @ direction).abs().max() < 1e-6


def test_a_diverging_step_size_gives_nan_traces_not_a_number():
    cfg = SGLDConfig(chains=3, draws=200, nbeta=100.0, step_size=0.1, localization=0.0)  # eps * a = 20 > 4
    result = estimate(lambda p, _: p["w"].pow(2).sum(), {"w": torch.zeros(2)}, cfg)
    assert result.diverged_chains == (0, 1, 2)
    assert math.isnan(result.llc_mean) and torch.isnan(result.loss_trace[:, -1]).all()


def test_potential_and_its_gradient_follow_the_definitions():
    w, w_star = torch.tensor([[1.0, 2.0]]), torch.tensor([0.5, 0.0])
    u = potential(torch.tensor([3.0]), w, w_star, nbeta=2.0, localization=4.0, weight_decay=0.5)
    assert float(u) == 2 * 3 + 4 / 2 * (0.25 + 4) + 0.5 / 2 * 5
    g = potential_gradient(w, w_star, torch.tensor([[1.0, 1.0]]), nbeta=2.0, localization=4.0, weight_decay=0.5)
    assert g.tolist() == [[2 + 4 * 0.5 + 0.5, 2 + 4 * 2 + 1.0]]


def test_default_nbeta_rules():
    assert default_nbeta("batch", 128, None) == pytest.approx(128 / math.log(128))
    assert default_nbeta("dataset", 128, 5000) == pytest.approx(5000 / math.log(5000))
    assert default_nbeta(12.5, 128, None) == 12.5
    with pytest.raises(ValueError, match="needs the dataset size"):
        default_nbeta("dataset", 128, None)
