"""The shared dictionary machinery: encode/decode, transcoders, the decoder constraint,
folding the training scales into saved weights, and loading bad directories."""

from __future__ import annotations

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from lm_saes.dictionaries import VARIANTS, Dictionary, TrainingContext, dictionary_config
from lm_saes.dictionaries.base import CONFIG_NAME, WEIGHTS_NAME
from lm_saes.errors import ConfigError, LmSaesError

KINDS = sorted(VARIANTS)


def test_an_sae_centres_its_input_and_a_transcoder_does_not(make):
    weights = dict(W_enc=[[1, 0], [0, 1]], b_enc=[0.5, 0], W_dec=[[1, 1], [0, 2]], b_dec=[1, -1])
    x = torch.tensor([[2.0, 3.0]])
    sae = make("relu", 2, 2, **weights)
    transcoder = make("relu", 2, 2, transcoder=True, **weights)
    # SAE: (x - b_dec) W_enc + b_enc = [1, 4] + [0.5, 0]; transcoder: x W_enc + b_enc = [2.5, 3]
    assert torch.equal(sae.pre_acts(x), torch.tensor([[1.5, 4.0]]))
    assert torch.equal(transcoder.pre_acts(x), torch.tensor([[2.5, 3.0]]))
    # decode: acts W_dec + b_dec = 1.5 [1, 1] + 4 [0, 2] + [1, -1]
    assert torch.equal(sae(x).recon, torch.tensor([[2.5, 8.5]]))


def test_transcoder_by_hand(make):
    # d_in = 3 -> d_sae = 2 -> d_out = 2
    d = make("relu", 2, 3, 2, transcoder=True, W_enc=[[1, 0], [0, 1], [1, -1]], b_enc=[0, 0.5],
             W_dec=[[1, 0], [1, 1]], b_dec=[0, 1])
    x = torch.tensor([[1.0, 2.0, 3.0]])
    # pre = [1 + 3, 2 - 3 + 0.5] = [4, -0.5]; acts = [4, 0]; recon = 4 [1, 0] + [0, 1] = [4, 1]
    out = d(x)
    assert torch.equal(out.acts, torch.tensor([[4.0, 0.0]]))
    assert torch.equal(out.recon, torch.tensor([[4.0, 1.0]]))


@pytest.mark.parametrize("kind", KINDS)
def test_every_variant_trains_as_a_transcoder(make, kind):
    torch.manual_seed(0)
    d = make(kind, 4, 3, 2, transcoder=True)
    x, y = torch.randn(5, 3), torch.randn(5, 2)
    out = d.loss(x, y, TrainingContext(1.0, torch.tensor([True, False, True, False])))
    out.loss.backward()
    assert d(x).recon.shape == (5, 2) and out.fired.shape == (4,) and torch.isfinite(out.loss)
    assert d.W_enc.grad.shape == (3, 4) and d.W_dec.grad.shape == (4, 2)


def test_an_sae_must_reconstruct_its_own_width(make):
    with pytest.raises(ConfigError, match="d_in=3 != d_out=2"):
        make("relu", 4, 3, 2)


def test_remove_parallel_grad_leaves_the_gradient_orthogonal_to_each_row(make):
    torch.manual_seed(0)
    d = make("topk", 4, 3, W_dec=torch.randn(4, 3).tolist())  # rows deliberately not unit
    grad = torch.randn(4, 3)
    d.W_dec.grad = grad.clone()
    d.remove_parallel_grad()
    rows = d.W_dec.detach() / d.W_dec.detach().norm(dim=1, keepdim=True)
    assert torch.allclose((d.W_dec.grad * rows).sum(1), torch.zeros(4), atol=1e-6)
    # only the parallel part went: what is left plus it is the original gradient
    assert torch.allclose(d.W_dec.grad + (grad * rows).sum(1, keepdim=True) * rows, grad, atol=1e-6)


@pytest.mark.parametrize("kind", ["topk", "batchtopk", "jumprelu"])
def test_normalize_decoder_gives_unit_rows(make, kind):
    d = make(kind, 3, 2, W_dec=[[3, 4], [0, 0.5], [1, 1]])
    d.normalize_decoder()
    assert torch.allclose(d.W_dec.norm(dim=1), torch.ones(3))
    assert torch.allclose(d.W_dec[0], torch.tensor([0.6, 0.8]))


def test_a_relu_dictionary_keeps_its_decoder_norms(make):
    W_dec = [[3.0, 4.0], [0.0, 0.5]]
    d = make("relu", 2, 2, W_dec=W_dec)
    d.W_dec.grad = torch.ones(2, 2)
    d.normalize_decoder()
    d.remove_parallel_grad()
    assert torch.equal(d.W_dec.detach(), torch.tensor(W_dec)) and torch.equal(d.W_dec.grad, torch.ones(2, 2))


def with_biases(make, kind: str, transcoder: bool, seed: int) -> Dictionary:
    """A d_sae 8 dictionary on width 3 (2 out for a transcoder) with random nonzero biases."""
    torch.manual_seed(seed)
    d = make(kind, 8, 3, 2 if transcoder else 3, transcoder=transcoder)
    with torch.no_grad():
        d.b_enc.normal_(std=0.3)
        d.b_dec.normal_()
    return d


@pytest.mark.parametrize("transcoder", [False, True], ids=["sae", "transcoder"])
@pytest.mark.parametrize("kind", KINDS)
def test_saved_weights_work_on_raw_activations(make, tmp_path, kind, transcoder):
    d = with_biases(make, kind, transcoder, seed=0)
    if kind == "batchtopk":
        d.threshold.fill_(0.2)
    if kind == "jumprelu":
        d.log_threshold.data.fill_(-1.0)
    d.set_scales(2.5, 0.4)
    d.eval()
    x = torch.randn(10, 3)
    loaded = Dictionary.from_pretrained(d.save(tmp_path / kind))
    expected = d(x * 2.5)
    out = loaded(x)
    assert torch.allclose(out.pre, expected.pre, atol=1e-5)
    assert torch.allclose(out.acts, expected.acts, atol=1e-5)
    assert torch.allclose(out.recon, expected.recon / 0.4, atol=1e-5)
    assert out.acts.ne(0).any()
    assert loaded.input_scale.item() == 1.0 and loaded.output_scale.item() == 1.0
    meta = json.loads((tmp_path / kind / CONFIG_NAME).read_text())
    assert (meta["kind"], meta["d_sae"], meta["transcoder"]) == (kind, 8, transcoder)
    assert meta["training_scales"] == {"input": 2.5, "output": pytest.approx(0.4)}
    assert type(loaded) is VARIANTS[kind] and loaded.cfg == d.cfg


@pytest.mark.parametrize("transcoder", [False, True], ids=["sae", "transcoder"])
@pytest.mark.parametrize("kind", KINDS)
def test_unfolding_a_saved_dictionary_restores_its_training_weights_and_loss(make, tmp_path, kind, transcoder):
    d = with_biases(make, kind, transcoder, seed=1)
    d.set_scales(2.5, 0.4)
    loaded = Dictionary.from_pretrained(d.save(tmp_path / kind))
    loaded.unfold_scales(2.5, 0.4)
    for name, value in d.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[name], value, rtol=1e-5, atol=1e-5)
    x, y = torch.randn(10, 3), torch.randn(10, 2 if transcoder else 3)
    ctx = TrainingContext(sparsity_scale=1.0, dead_mask=None)
    d.train(), loaded.train()
    expected = d.loss(x * 2.5, y * 0.4, ctx).loss
    torch.testing.assert_close(loaded.loss(x * loaded.input_scale, y * loaded.output_scale, ctx).loss, expected)


def test_a_directory_without_weights_is_refused(make, tmp_path):
    make("relu", 4, 3).save(tmp_path)
    (tmp_path / WEIGHTS_NAME).unlink()
    with pytest.raises(LmSaesError, match=f"{WEIGHTS_NAME} is missing"):
        Dictionary.from_pretrained(tmp_path)


def test_weights_of_another_size_are_refused_naming_the_mismatch(make, tmp_path):
    make("topk", 4, 3).save(tmp_path / "d4")
    make("topk", 5, 3).save(tmp_path / "d5")
    (tmp_path / "d5" / WEIGHTS_NAME).replace(tmp_path / "d4" / WEIGHTS_NAME)
    with pytest.raises(LmSaesError, match=r"W_enc: expected \(3, 4\), found \(3, 5\)") as err:
        Dictionary.from_pretrained(tmp_path / "d4")
    assert "b_dec" not in str(err.value)  # only the tensors that differ are named


def test_weights_of_another_variant_are_refused(make, tmp_path):
    make("relu", 4, 3).save(tmp_path / "relu")
    save_file(make("jumprelu", 4, 3).state_dict(), tmp_path / "relu" / WEIGHTS_NAME)
    with pytest.raises(LmSaesError, match="log_threshold: expected absent, found \\(4,\\)"):
        Dictionary.from_pretrained(tmp_path / "relu")


def test_a_garbage_weights_file_is_refused(make, tmp_path):
    make("relu", 4, 3).save(tmp_path)
    (tmp_path / WEIGHTS_NAME).write_bytes(b"not a safetensors file at all")
    with pytest.raises(LmSaesError, match="not a readable safetensors file"):
        Dictionary.from_pretrained(tmp_path)


@pytest.mark.parametrize("text", ["{not json", '{"kind": "relu"}', '{"dictionary": {"kind": "nope"}}'])
def test_a_bad_config_is_refused(make, tmp_path, text):
    make("relu", 4, 3).save(tmp_path)
    (tmp_path / CONFIG_NAME).write_text(text)
    with pytest.raises(LmSaesError, match="not a valid dictionary config"):
        Dictionary.from_pretrained(tmp_path)


# --- the data-fitted start (init_from_data), by hand ------------------------------------------
# Two tokens x = [[2, 0], [0, 4]] (mean [1, 2]); W_enc = I; decoder rows d_0 = [1, 0], d_1 = [0.6, 0.8].
# Centred: x - mean = [[1, -2], [-1, 2]] = pre (b_enc = 0). Token 0 keeps feature 0 (1), token 1
# feature 1 (2): r0 = [[1, 0], [1.2, 1.6]]. <x - mean, r0> = [1, 2.0] -> 1.5; ||r0||^2 = [1, 4] -> 2.5.
# The least-squares scale c = 1.5 / 2.5 = 0.6.
START_X = [[2.0, 0.0], [0.0, 4.0]]
START_DEC = [[1.0, 0.0], [0.6, 0.8]]
EYE2 = [[1.0, 0.0], [0.0, 1.0]]


def fit_start(d):
    x = torch.tensor(START_X)
    return d.init_from_data(x, x, x.mean(0), x.mean(0))


def test_init_from_data_centres_on_the_mean_and_fits_the_least_squares_scale(make):
    d = make("topk", 2, 2, W_enc=EYE2, W_dec=START_DEC, k=1)
    assert fit_start(d) == pytest.approx(0.6)
    assert torch.allclose(d.b_dec, torch.tensor([1.0, 2.0]))
    assert torch.allclose(d.W_enc, 0.6 * torch.eye(2))  # the encoder shrinks; decoder rows stay unit
    assert torch.allclose(d.W_dec, torch.tensor(START_DEC))
    recon = d(torch.tensor(START_X)).recon  # the start's reconstruction is now c r0 + mean
    assert torch.allclose(recon, torch.tensor([[1.6, 2.0], [1.72, 2.96]]))


def test_a_relu_start_shrinks_encoder_and_decoder_by_the_root(make):
    d = make("relu", 2, 2, W_enc=EYE2, W_dec=START_DEC)  # ReLU keeps the same two activations here
    assert fit_start(d) == pytest.approx(0.6)
    assert torch.allclose(d.W_enc, 0.6**0.5 * torch.eye(2))
    assert torch.allclose(d.W_dec, 0.6**0.5 * torch.tensor(START_DEC))


def test_a_transcoder_start_centres_its_pre_activations_through_b_enc(make):
    d = make("topk", 2, 2, 2, transcoder=True, W_enc=EYE2, W_dec=START_DEC, k=1)
    fit_start(d)
    # b_enc = -mean W_enc = [-1, -2], then scaled by c along with W_enc
    c = d.W_enc[0, 0].item()
    assert torch.allclose(d.b_enc, -c * torch.tensor([1.0, 2.0]))
    assert torch.allclose(d.pre_acts(torch.tensor(START_X)), c * torch.tensor([[1.0, -2.0], [-1.0, 2.0]]))


def test_jumprelu_thresholds_start_at_a_quantile_of_the_pre_activations(make):
    d = make("jumprelu", 4, 2)  # fraction min(1/2, 2/4): each feature fires on 2 of 4 tokens
    x = torch.tensor([[1.0, 0.0], [2.0, 1.0], [3.0, -1.0], [4.0, 2.0]])
    with torch.no_grad():
        d.W_enc.copy_(torch.tensor([[1.0, 0.0, 1.0, -1.0], [0.0, 1.0, 1.0, 0.0]]))
    d.init_activation(x)  # pre = x W_enc (b_dec = 0): midway between each column's 2nd and 3rd largest
    # columns [1, 2, 3, 4], [0, 1, -1, 2], [1, 3, 2, 6], [-1, -2, -3, -4]
    assert torch.allclose(d.threshold, torch.tensor([2.5, 0.5, 2.5, 1e-6]))  # clamped above 0
    assert ((d.encode(x) != 0).sum(0)).tolist() == [2, 2, 2, 0]  # a feature never positive stays off
    fixed = make("jumprelu", 4, 2, initial_threshold=0.25)
    fixed.init_activation(x)
    assert torch.allclose(fixed.threshold, torch.full((4,), 0.25))


def test_weights_with_nan_or_inf_are_refused_naming_the_tensor_but_log_zero_is_kept():
    from lm_saes.dictionaries.base import check_finite

    good = {"W_dec": torch.ones(2, 3), "log_threshold": torch.tensor([0.0, -math.inf]), "count": torch.arange(3)}
    check_finite(good, "dir/weights.safetensors")  # log(0) = -inf is a JumpReLU threshold of 0
    for name, value in [("W_dec", math.nan), ("W_dec", math.inf), ("log_threshold", math.inf)]:
        bad = {k: v.clone() for k, v in good.items()}
        bad[name].view(-1)[0] = value
        with pytest.raises(LmSaesError, match=f"dir/weights.safetensors: tensor '{name}' holds 1 NaN or infinite"):
            check_finite(bad, "dir/weights.safetensors")


def test_saved_files_get_the_umask_mode_like_every_other_artifact_file(make, tmp_path):
    import os
    import stat

    out = make("topk", 4, 3, k=1).save(tmp_path / "sae")
    mask = os.umask(0)
    os.umask(mask)
    expected = 0o666 & ~mask
    for name in ("weights.safetensors", "config.json"):
        assert stat.S_IMODE((out / name).stat().st_mode) == expected, name


# --- per-token normalisation (normalize_tokens) -------------------------------------------------


def test_a_token_normalising_dictionary_encodes_every_token_at_norm_sqrt_d_and_scales_back(make):
    d = make("topk", 2, 2, W_enc=[[1, 0], [0, 1]], W_dec=[[1, 0], [0, 1]], normalize_tokens=True)
    x = torch.tensor([[3.0, 4.0], [0.3, 0.4], [0.0, 0.0]])
    out = d(x)
    # rho = sqrt(2) / 5 and sqrt(2) / 0.5: both tokens become [3, 4] sqrt(2) / 5; k = 1 keeps 4 sqrt(2) / 5
    kept = 4 * math.sqrt(2) / 5
    torch.testing.assert_close(out.acts, torch.tensor([[0, kept], [0, kept], [0, 0]]))
    torch.testing.assert_close(d.encode(x), out.acts)
    # the reconstruction kept e_2, divided by rho: [0, 4], [0, 0.4]; a zero token stays zero
    torch.testing.assert_close(out.recon, torch.tensor([[0, 4.0], [0, 0.4], [0, 0]]))
    plain = make("topk", 2, 2, W_enc=[[1, 0], [0, 1]], W_dec=[[1, 0], [0, 1]])
    torch.testing.assert_close(plain(x).acts, torch.tensor([[0, 4.0], [0, 0.4], [0, 0]]))


@pytest.mark.parametrize("transcoder", [False, True], ids=["sae", "transcoder"])
def test_a_saved_token_normalising_dictionary_computes_the_same_on_raw_activations(make, tmp_path, transcoder):
    torch.manual_seed(2)
    d = make("batchtopk", 8, 3, 2 if transcoder else 3, transcoder=transcoder, normalize_tokens=True)
    with torch.no_grad():
        d.b_enc.normal_(std=0.3)
        d.b_dec.normal_()
        d.threshold.fill_(0.2)
    output_scale = 0.4 if transcoder else 1.0
    d.set_scales(1.0, output_scale)
    d.eval()
    x = torch.randn(10, 3)
    loaded = Dictionary.from_pretrained(d.save(tmp_path / "d"))
    assert loaded.cfg.normalize_tokens
    out, expected = loaded(x), d(x)
    torch.testing.assert_close(out.acts, expected.acts)
    torch.testing.assert_close(out.recon, expected.recon / output_scale)
    assert out.acts.ne(0).any() and out.acts.eq(0).any()
    # a token's features do not depend on its norm, its reconstruction scales with it
    scaled = loaded(7 * x)
    torch.testing.assert_close(scaled.acts, out.acts)
    torch.testing.assert_close(scaled.recon, 7 * out.recon)


def test_the_training_pair_scales_the_target_by_its_inputs_factor(make):
    d = make("relu", 2, 2, transcoder=True, normalize_tokens=True)
    d.set_scales(1.0, 2.0)
    x, y = d.training_pair(torch.tensor([[3.0, 4.0]]), torch.tensor([[1.0, 1.0]]))
    rho = math.sqrt(2) / 5
    torch.testing.assert_close(x, torch.tensor([[3 * rho, 4 * rho]]))
    torch.testing.assert_close(y, torch.tensor([[2 * rho, 2 * rho]]))
    with pytest.raises(ValueError, match="takes inputs at scale 1"):
        d.set_scales(2.5, 1.0)


def test_a_batchtopk_saved_before_token_normalisation_loads_without_it(make, tmp_path):
    make("batchtopk", 4, 3).save(tmp_path)
    meta = json.loads((tmp_path / CONFIG_NAME).read_text())
    del meta["dictionary"]["normalize_tokens"]
    (tmp_path / CONFIG_NAME).write_text(json.dumps(meta))
    assert not Dictionary.from_pretrained(tmp_path).cfg.normalize_tokens
    assert dictionary_config({"kind": "batchtopk", "d_sae": 4, "k": 1}).normalize_tokens  # today's default
