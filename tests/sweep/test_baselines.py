"""Baselines as TopK dictionaries: full-budget reconstruction, top-k by hand, and each basis checked
against data whose answer is known (a planted subspace, a planted covariance, planted ICA sources)."""

from __future__ import annotations

import math

import pytest
import torch

from lm_saes.dictionaries import Dictionary
from lm_saes.dictionaries.topk import TopKDictionary
from lm_saes.errors import ConfigError, LmSaesError
from lm_saes.sweep.baselines import BASELINES, baseline_dictionary, fit_basis


def mixed_acts(tokens: int = 1000, d: int = 6, seed: int = 0) -> torch.Tensor:
    """Generic activations [tokens, d]: independent Laplace sources, randomly mixed and offset
    (no code is exactly 0, and the non-Gaussian sources give FastICA something to converge to)."""
    g = torch.Generator().manual_seed(seed)
    return laplace(tokens, d, g) @ torch.randn(d, d, generator=g) + torch.randn(d, generator=g)


def laplace(tokens: int, n: int, g: torch.Generator) -> torch.Tensor:
    """Independent standard Laplace samples [tokens, n]: an exponential with a random sign."""
    return -torch.rand(tokens, n, generator=g).log() * torch.randn(tokens, n, generator=g).sign()


def test_baseline_names_are_pinned():
    assert BASELINES == ("pca", "ica", "nmf", "neurons", "random")


@pytest.mark.parametrize("method", [m for m in BASELINES if m != "nmf"])  # nmf: its own test below
def test_full_budget_reconstructs_with_l0_d(method):
    acts = mixed_acts()
    d = acts.shape[1]
    dictionary = baseline_dictionary(fit_basis(method, acts), k=d)
    assert isinstance(dictionary, TopKDictionary) and not dictionary.training
    assert dictionary.d_sae == 2 * d and dictionary.W_dec.dtype == torch.float32
    assert torch.allclose(dictionary.W_dec.norm(dim=1), torch.ones(2 * d), atol=1e-6)
    with torch.no_grad():
        out = dictionary(acts)
    assert torch.allclose(out.recon, acts, atol=1e-4)
    assert ((out.acts != 0).sum(-1) == d).all()


def test_neurons_keep_the_k_largest_centred_coordinates():
    fit = torch.tensor(
        [[1.0, 2.0, 0.0, 4.0], [3.0, -2.0, 2.0, 0.0], [2.0, 0.0, 1.0, 2.0], [0.0, 1.0, 1.0, 1.0], [4.0, -1.0, 1.0, 3.0]]
    )
    mean = torch.tensor([2.0, 0.0, 1.0, 2.0])  # of `fit`
    x = torch.tensor([[5.0, 1.0, 0.5, -1.0], [2.5, -4.0, 1.8, 2.0]])
    # centred: [[3, 1, -0.5, -3], [0.5, -4, 0.8, 0]]; k = 2 keeps (3, -3) and (-4, 0.8)
    expected = torch.tensor([[5.0, 0.0, 1.0, -1.0], [2.0, -4.0, 1.8, 2.0]])
    centred = x - mean
    indices = centred.abs().topk(2, dim=-1).indices  # [2, 2]
    assert torch.allclose(mean + torch.zeros_like(x).scatter(-1, indices, centred.gather(-1, indices)), expected)
    dictionary = baseline_dictionary(fit_basis("neurons", fit), k=2)
    with torch.no_grad():
        out = dictionary(x)
    assert torch.allclose(out.recon, expected, atol=1e-6)
    assert ((out.acts != 0).sum(-1) == 2).all()


def test_pca_is_exact_on_a_k_dimensional_subspace():
    g = torch.Generator().manual_seed(1)
    k, d = 3, 8
    mean = torch.randn(d, generator=g)
    acts = mean + torch.randn(500, k, generator=g) @ torch.randn(k, d, generator=g)  # rank k around mean
    dictionary = baseline_dictionary(fit_basis("pca", acts), k=k)
    with torch.no_grad():
        out = dictionary(acts)
    assert torch.allclose(out.recon, acts, atol=1e-4)
    assert ((out.acts != 0).sum(-1) == k).all()
    # one budget less loses a direction of variance
    with torch.no_grad():
        smaller = baseline_dictionary(fit_basis("pca", acts), k=k - 1)(acts)
    assert (smaller.recon - acts).norm() > 0.1 * (acts - mean).norm()


def test_pca_directions_are_the_covariance_eigenvectors():
    # Tokens +-s_i q_i (around a mean) have covariance sum_i s_i^2 q_i q_i^T / (tokens - 1): eigenvectors
    # q_i (a rotation by 30 degrees in the first plane) with eigenvalues ordered by s = 3 > 2 > 1.
    c, s = math.cos(math.pi / 6), math.sin(math.pi / 6)
    q = torch.tensor([[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]], dtype=torch.float64)  # rows q_i
    scales = torch.tensor([3.0, 2.0, 1.0], dtype=torch.float64)
    mean = torch.tensor([1.0, -2.0, 0.5], dtype=torch.float64)
    acts = mean + torch.cat([scales[:, None] * q, -scales[:, None] * q])  # [6, 3]
    basis = fit_basis("pca", acts)
    assert torch.allclose(basis.mean, mean, atol=1e-12)
    cos = (basis.directions @ q.T).abs()  # [3, 3]
    assert torch.allclose(cos, torch.eye(3, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(basis.encoder, basis.directions.T)


def test_ica_recovers_the_mixing_directions():
    n, tokens = 4, 4000
    sources = laplace(tokens, n, torch.Generator().manual_seed(0))  # [tokens, n]
    mixing = torch.tensor(  # rows: how each source shows up in the activation (d = n)
        [[1.0, 0.5, 0.0, 0.2], [0.0, 1.0, -0.7, 0.0], [0.4, 0.0, 1.0, 0.6], [-0.3, 0.2, 0.1, 1.0]]
    )
    acts = sources @ mixing + torch.tensor([0.5, -1.0, 2.0, 0.0])
    basis = fit_basis("ica", acts, seed=0)
    truth = mixing / mixing.norm(dim=1, keepdim=True)
    cos = (basis.directions @ truth.double().T).abs()  # [recovered, true]
    best = cos.max(1)
    assert (best.values > 0.95).all(), cos
    assert sorted(best.indices.tolist()) == list(range(n))  # a one-to-one match
    assert torch.allclose(basis.directions.norm(dim=1), torch.ones(n, dtype=torch.float64))


def test_ica_refuses_a_constant_dimension_that_the_others_handle():
    acts = torch.cat([mixed_acts(d=3), torch.full((1000, 1), 3.0)], dim=1)  # [1000, 4], last column constant
    with pytest.raises(LmSaesError, match="covariance is singular"):
        fit_basis("ica", acts)
    for method in ("pca", "neurons", "random"):
        with torch.no_grad():
            recon = baseline_dictionary(fit_basis(method, acts), k=4)(acts).recon
        assert torch.allclose(recon, acts, atol=1e-4)


def test_nmf_parts_are_a_basis_read_at_full_budget():
    # NMF's parts are not orthogonal, so float32 codes keep cond(D) x 6e-8 of the signal, not 1e-7.
    acts = mixed_acts(tokens=600, d=4)
    basis = fit_basis("nmf", acts, seed=0)
    assert torch.allclose(basis.directions.norm(dim=1), torch.ones(4, dtype=torch.float64))
    assert torch.allclose(basis.encoder @ basis.directions, torch.eye(4, dtype=torch.float64), atol=1e-9)
    assert torch.equal(fit_basis("nmf", acts, seed=0).directions, basis.directions)  # seeded
    dictionary = baseline_dictionary(basis, k=4)
    with torch.no_grad():
        out = dictionary(acts)
    condition = float(torch.linalg.cond(basis.directions))
    centred = acts - acts.mean(0)
    assert (out.recon - acts).norm() <= 1e-6 * condition * centred.norm()
    assert ((out.acts != 0).sum(-1) == 4).all()


def test_nmf_directions_are_the_parts_of_the_halves():
    from sklearn.decomposition import NMF

    acts = mixed_acts(tokens=600, d=4)
    basis = fit_basis("nmf", acts, seed=0)
    centred = acts.double() - acts.double().mean(0)
    halves = torch.cat([centred.clamp_min(0), (-centred).clamp_min(0)], 1).numpy()  # [tokens, 2d] >= 0
    parts = NMF(n_components=4, init="nndsvda", solver="mu", max_iter=200, tol=1e-4, random_state=0).fit(halves)
    raw = torch.from_numpy(parts.components_[:, :4] - parts.components_[:, 4:])  # part+ minus part-
    cos = basis.directions @ (raw / raw.norm(dim=1, keepdim=True)).T  # [found, sklearn's]
    assert torch.allclose(cos.max(1).values, torch.ones(4, dtype=torch.float64))  # the same parts, reordered
    order = raw.norm(dim=1).argsort(descending=True)
    assert torch.equal(cos.argmax(1), order)  # by decreasing norm


def test_random_bases_are_orthonormal_and_seeded():
    acts = mixed_acts(d=5)
    a, b, c = fit_basis("random", acts, seed=0), fit_basis("random", acts, seed=0), fit_basis("random", acts, seed=1)
    assert torch.allclose(a.directions @ a.directions.T, torch.eye(5, dtype=torch.float64), atol=1e-12)
    assert torch.equal(a.directions, b.directions)
    assert not torch.allclose(a.directions, c.directions, atol=0.1)
    assert torch.allclose(a.mean, acts.double().mean(0))


def test_unknown_method_names_the_valid_ones():
    with pytest.raises(ConfigError, match="pca, ica, nmf, neurons, random"):
        fit_basis("svd", mixed_acts())


def test_budget_outside_the_basis_is_refused():
    basis = fit_basis("neurons", mixed_acts(d=4))
    for k in (0, 5):
        with pytest.raises(ConfigError, match="between 1 and its 4 directions"):
            baseline_dictionary(basis, k=k)


def test_too_few_tokens_is_refused():
    with pytest.raises(ConfigError, match="more tokens than d"):
        fit_basis("pca", torch.ones(4, 6))


def test_save_and_load_round_trip(tmp_path):
    acts = mixed_acts()
    dictionary = baseline_dictionary(fit_basis("pca", acts), k=2)
    dictionary.save(tmp_path / "pca-l0-2")
    loaded = Dictionary.from_pretrained(tmp_path / "pca-l0-2")
    assert isinstance(loaded, TopKDictionary) and loaded.cfg.k == 2 and loaded.d_sae == 12
    with torch.no_grad():
        assert torch.allclose(loaded(acts).recon, dictionary(acts).recon)
