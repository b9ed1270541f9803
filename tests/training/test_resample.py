"""Dead-feature resampling: what it rewrites, by hand, and that training with it revives features."""

from __future__ import annotations

import pytest
import torch

from lm_saes.config import ReLUConfig, TrainConfig
from lm_saes.dictionaries import build_dictionary
from lm_saes.training.resample import ENCODER_SCALE, resample_dead
from lm_saes.training.train import train


def setup(d=8, m=6, batch=5):
    torch.manual_seed(0)
    dictionary = build_dictionary(ReLUConfig(d_sae=m, l1_coefficient=1.0), d, d)
    with torch.no_grad():
        dictionary.W_enc.mul_(torch.linspace(0.5, 3.0, m))  # unequal encoder norms
    optimizer = torch.optim.Adam(dictionary.parameters())
    x = torch.randn(batch, d)
    dictionary(x).recon.pow(2).sum().backward()
    optimizer.step()  # Adam now has moments
    return dictionary, optimizer, x


def test_dead_features_are_rewritten_from_inputs_and_nothing_else_changes():
    dictionary, optimizer, x = setup()
    dead = torch.tensor([False, True, False, True, True, False])
    before = {k: v.clone() for k, v in dictionary.state_dict().items()}
    alive_norm = dictionary.W_enc[:, ~dead].norm(dim=0).mean()
    features = resample_dead(dictionary, optimizer, dead, x, x, torch.Generator().manual_seed(1))
    assert features.tolist() == [1, 3, 4]
    for i in features:
        direction = dictionary.W_dec[i].detach()
        assert float(direction.norm()) == pytest.approx(1.0)
        sources = x / x.norm(dim=1, keepdim=True)
        match = int((sources @ direction).argmax())  # the picked input is one of the batch's
        torch.testing.assert_close(direction, sources[match])
        torch.testing.assert_close(dictionary.W_enc[:, i], ENCODER_SCALE * alive_norm * sources[match])
        assert float(dictionary.b_enc[i]) == 0
        for p, index in ((dictionary.W_enc, (slice(None), i)), (dictionary.b_enc, i), (dictionary.W_dec, i)):
            assert float(optimizer.state[p]["exp_avg"][index].abs().sum()) == 0
            assert float(optimizer.state[p]["exp_avg_sq"][index].abs().sum()) == 0
    picked_rows = {int((x / x.norm(dim=1, keepdim=True) @ dictionary.W_dec[i]).argmax()) for i in features}
    assert len(picked_rows) == 3  # sampled without replacement
    for i in (0, 2, 5):
        torch.testing.assert_close(dictionary.W_enc[:, i], before["W_enc"][:, i])
        torch.testing.assert_close(dictionary.W_dec[i], before["W_dec"][i])
    torch.testing.assert_close(dictionary.b_dec, before["b_dec"])


def test_inputs_are_picked_in_proportion_to_their_loss():
    dictionary, optimizer, x = setup(batch=5)
    with torch.no_grad():
        dictionary.W_dec.zero_()
        dictionary.b_dec.zero_()  # recon = 0: the loss of input j is ||x_j||
    x = torch.zeros(5, 8)
    x[:, 0] = torch.tensor([1.0, 1.0, 1.0, 1.0, 96.0])  # input 4 holds 96% of the loss mass
    dead = torch.tensor([True, False, False, False, False, False])
    picks = []
    for seed in range(200):
        dictionary.W_dec.data[0].zero_()
        resample_dead(dictionary, optimizer, dead, x + torch.eye(8)[[1, 2, 3, 4, 5]], x, torch.Generator().manual_seed(seed))
        picks.append(int(dictionary.W_enc[1:6, 0].argmax()))  # the one-hot marks the picked input
    assert 0.9 < picks.count(4) / 200 <= 1.0


def test_training_with_resampling_revives_killed_features(tmp_path):
    from lm_saes.training.trainer import Trainer

    torch.manual_seed(0)
    directions = torch.randn(32, 16)
    batches = [(torch.rand(128, 32) * (torch.rand(128, 32) < 0.1)) @ directions for _ in range(30)]

    def fired_after_training(resample_every: int) -> torch.Tensor:
        cfg = TrainConfig.model_validate(dict(
            dictionary={"kind": "relu", "d_sae": 64, "l1_coefficient": 0.3}, output_dir=tmp_path,
            total_tokens=128 * 30, batch_size=128, lr=1e-2, lr_warmup_steps=1, checkpoint_every=0,
            dead_after_tokens=128 * 5, resample_every=resample_every, device="cpu",
        ))
        torch.manual_seed(0)
        dictionary = build_dictionary(cfg.dictionary, 16, 16)
        with torch.no_grad():
            dictionary.b_enc[:32] = -1e3  # half the features can never fire
        trainer = Trainer(cfg, dictionary, torch.device("cpu"))
        trainer.fit(((x, x) for x in batches), on_log=lambda record: None, on_checkpoint=lambda: None)
        return (dictionary.encode(torch.cat(batches[-5:])) > 0).any(0)

    assert not fired_after_training(0)[:32].any()
    revived = fired_after_training(10)[:32]
    assert int(revived.sum()) >= 24  # resampled at steps 10, 20 and 30: nearly all fire again
