"""Spliced-in losses on the real test model, with dictionaries whose reconstruction is known.

The identity dictionary (W_enc = W_dec = I, zero biases, identity activation) reconstructs its
input exactly; the zero dictionary (W_dec = 0) always outputs zeros. A randomly initialised
model is near uniform (CE about ln 512), so the tests check identities rather than sizes.
"""

from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from transformers import GPT2LMHeadModel

from lm_saes.config import ModelConfig
from lm_saes.dictionaries.base import Dictionary
from lm_saes.errors import ConfigError, ModelError
from lm_saes.evaluation import spliced_losses
from lm_saes.models.backend import load_language_model

D_MODEL = 32


class IdentityDictionary(Dictionary):
    """recon = decoder_scale * x exactly: d_sae = d_in, W_enc = I, W_dec = decoder_scale * I."""

    kind = "identity"

    def __init__(self, d: int, transcoder: bool = False, decoder_scale: float = 1.0) -> None:
        super().__init__(SimpleNamespace(d_sae=d, normalize_tokens=False), d_in=d, d_out=d, transcoder=transcoder)
        with torch.no_grad():
            self.W_enc.copy_(torch.eye(d))
            self.W_dec.copy_(decoder_scale * torch.eye(d))

    def activate(self, pre):
        return pre


def zero_dictionary(transcoder: bool = False) -> IdentityDictionary:
    return IdentityDictionary(D_MODEL, transcoder, decoder_scale=0.0)


@pytest.fixture(scope="module")
def lm(model_dir):
    return load_language_model(ModelConfig(name=str(model_dir), device="cpu"))


@pytest.fixture(scope="module")
def hf(model_dir):
    return GPT2LMHeadModel.from_pretrained(model_dir, attn_implementation="eager").eval()


@pytest.fixture(scope="module")
def tokens():
    return torch.randint(1, 500, (4, 16), generator=torch.Generator().manual_seed(0), dtype=torch.int32)


def hf_ce(logits, tokens, keep=None):
    """Next-token CE straight from logits: positions 0..ctx-2 predict 1..ctx-1, optionally a subset."""
    keep = torch.ones_like(tokens[:, 1:], dtype=torch.bool) if keep is None else keep
    return F.cross_entropy(logits[:, :-1][keep], tokens[:, 1:].long()[keep]).item()


def test_clean_ce_matches_hugging_face(lm, hf, tokens):
    with torch.no_grad():
        logits = hf(tokens.long()).logits
    losses = spliced_losses(lm, IdentityDictionary(D_MODEL), tokens, "blocks.1.hook_resid_post")
    assert losses.ce_clean == pytest.approx(hf_ce(logits, tokens), abs=1e-4)
    # Padding (mask false) on the last 5 tokens of row 0 and the last 9 of row 3: predictions of
    # those tokens are not scored.
    mask = torch.ones_like(tokens, dtype=torch.bool)
    mask[0, -5:] = mask[3, -9:] = False
    masked = spliced_losses(lm, IdentityDictionary(D_MODEL), tokens, "blocks.1.hook_resid_post", mask=mask)
    assert masked.ce_clean == pytest.approx(hf_ce(logits, tokens, keep=mask[:, 1:]), abs=1e-4)
    assert masked.ce_clean != pytest.approx(losses.ce_clean, abs=1e-4)


@pytest.mark.parametrize("hook", ["blocks.1.hook_resid_post", "blocks.2.hook_mlp_out"])
def test_exact_reconstruction_recovers_everything(lm, tokens, hook):
    losses = spliced_losses(lm, IdentityDictionary(D_MODEL), tokens, hook)
    assert losses.ce_spliced == pytest.approx(losses.ce_clean, abs=1e-6)
    assert losses.kl_spliced == pytest.approx(0.0, abs=1e-6)
    assert losses.ce_loss_recovered == pytest.approx(1.0, abs=1e-3)
    assert losses.ce_zero != pytest.approx(losses.ce_clean, abs=1e-4)  # the ablation does act


@pytest.mark.parametrize("hook", ["blocks.1.hook_resid_post", "blocks.2.hook_mlp_out"])
def test_zero_reconstruction_is_zero_ablation(lm, tokens, hook):
    losses = spliced_losses(lm, zero_dictionary(), tokens, hook)
    assert losses.ce_spliced == pytest.approx(losses.ce_zero, abs=1e-6)
    assert losses.ce_loss_recovered == pytest.approx(0.0, abs=1e-3)
    assert losses.kl_spliced > 0


def test_dictionary_dtype_differs_from_the_model(lm, tokens):
    as_float = spliced_losses(lm, IdentityDictionary(D_MODEL), tokens, "blocks.1.hook_resid_post")
    as_double = spliced_losses(lm, IdentityDictionary(D_MODEL).double(), tokens, "blocks.1.hook_resid_post")
    assert as_double.ce_spliced == pytest.approx(as_float.ce_spliced, abs=1e-6)


def test_transcoder_between_two_names_of_one_tensor(lm, tokens):
    # In GPT-2 block 0's output is block 1's input: rebuilding one from the other exactly is lossless.
    identity = IdentityDictionary(D_MODEL, transcoder=True)
    losses = spliced_losses(lm, identity, tokens, "blocks.0.hook_resid_post", "blocks.1.hook_resid_pre")
    assert losses.ce_spliced == pytest.approx(losses.ce_clean, abs=1e-6)
    assert losses.ce_loss_recovered == pytest.approx(1.0, abs=1e-3)


def test_transcoder_reads_hook_in_and_writes_hook_out(lm, hf, tokens):
    # An identity transcoder from block 0's input to its output makes block 0 a no-op; the
    # same model in Hugging Face with block 0 bypassed must give the same loss.
    identity = IdentityDictionary(D_MODEL, transcoder=True)
    losses = spliced_losses(lm, identity, tokens, "blocks.0.hook_resid_pre", "blocks.0.hook_resid_post")

    def bypass(module, args, out):
        return args[0] if isinstance(out, torch.Tensor) else (args[0], *out[1:])

    handle = hf.transformer.h[0].register_forward_hook(bypass)
    try:
        with torch.no_grad():
            logits = hf(tokens.long()).logits
    finally:
        handle.remove()
    assert losses.ce_spliced == pytest.approx(hf_ce(logits, tokens), abs=1e-4)
    assert losses.ce_spliced != pytest.approx(losses.ce_clean, abs=1e-5)
    # Zero-ablating block 0's output and rebuilding it as zeros agree for a transcoder too.
    zero = spliced_losses(
        lm, zero_dictionary(True), tokens, "blocks.0.hook_resid_pre", "blocks.0.hook_resid_post"
    )
    assert zero.ce_spliced == pytest.approx(zero.ce_zero, abs=1e-6)


def test_errors(lm, tokens):
    transcoder = IdentityDictionary(D_MODEL, transcoder=True)
    with pytest.raises(ConfigError, match="needs hook_out"):
        spliced_losses(lm, transcoder, tokens, "blocks.0.hook_resid_pre")
    with pytest.raises(ModelError, match="must fire before"):
        spliced_losses(lm, transcoder, tokens, "blocks.1.hook_resid_post", "blocks.0.hook_resid_post")
    with pytest.raises(ModelError, match="no hook point"):
        spliced_losses(lm, IdentityDictionary(D_MODEL), tokens, "blocks.7.hook_resid_post")
    with pytest.raises(ModelError, match="d_in=32"):
        spliced_losses(lm, IdentityDictionary(D_MODEL), tokens, "blocks.0.mlp.hook_pre")  # d = 128
