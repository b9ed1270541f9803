"""The modular-addition toy: its data, its model, and that the published recipe groks on a CPU."""

import json

import pytest
import torch

from lm_saes.toys.config import ModularAdditionConfig
from lm_saes.toys.directory import load_toy
from lm_saes.toys.modular_addition import ModularAdditionMLP, PairData, all_pairs, loss, make_data, metrics


def test_the_split_covers_every_pair_once_with_the_right_labels():
    cfg = ModularAdditionConfig(p=11, train_fraction=0.8, data_seed=3)
    data = make_data(cfg)
    pairs = torch.cat([data.train.pairs, data.test.pairs])
    assert len(data.train.pairs) == int(0.8 * 121) and len(pairs) == 121
    assert len({tuple(p) for p in pairs.tolist()}) == 121  # disjoint and complete
    for split in data:
        assert torch.equal(split.labels, (split.pairs[:, 0] + split.pairs[:, 1]) % 11)
    again = make_data(cfg)
    assert torch.equal(again.train.pairs, data.train.pairs)  # seeded
    assert not torch.equal(make_data(cfg.model_copy(update={"data_seed": 4})).train.pairs, data.train.pairs)


def test_random_labels_are_seeded_residues_unrelated_to_the_sum():
    cfg = ModularAdditionConfig(p=23, random_labels=True)
    data = make_data(cfg)
    labels = torch.cat([data.train.labels, data.test.labels])
    pairs = torch.cat([data.train.pairs, data.test.pairs])
    assert labels.min() >= 0 and labels.max() < 23
    assert (labels == (pairs[:, 0] + pairs[:, 1]) % 23).float().mean() < 0.1  # about 1/23 by chance
    assert torch.equal(make_data(cfg).train.labels, data.train.labels)


@pytest.mark.parametrize("tie_unembed", [False, True])
@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_the_mlp_maps_pairs_to_logits_over_residues(tie_unembed, activation):
    cfg = ModularAdditionConfig(p=7, d_embed=4, d_hidden=6, tie_unembed=tie_unembed, activation=activation)
    model = ModularAdditionMLP(cfg)
    pairs = all_pairs(7)
    assert model(pairs).shape == (49, 7)
    assert model.pre_unembed(pairs).shape == (49, 4 if tie_unembed else 6)
    hidden = model.hidden(pairs[:1])
    pre = model.left(model.embed.weight[0]) + model.right(model.embed.weight[0])  # the pair (0, 0) by hand
    expected = torch.nn.functional.gelu(pre) if activation == "gelu" else torch.relu(pre)
    torch.testing.assert_close(hidden[0], expected)
    if tie_unembed:  # the unembedding reads through the embedding matrix
        torch.testing.assert_close(model(pairs[:1])[0], model.unembed(hidden[0]) @ model.embed.weight.T)


def test_loss_and_metrics_follow_their_definitions():
    cfg = ModularAdditionConfig(p=5, d_embed=3, d_hidden=4)
    model = ModularAdditionMLP(cfg)
    batch = PairData(all_pairs(5), (all_pairs(5).sum(1)) % 5)
    logits = model(batch.pairs)
    by_hand = -(logits.log_softmax(-1).gather(1, batch.labels[:, None])).mean().detach()
    torch.testing.assert_close(loss(model, batch), by_hand)
    m = metrics(model, batch)
    assert m["accuracy"] == pytest.approx(float((logits.argmax(-1) == batch.labels).float().mean()))
    assert m["loss"] == pytest.approx(float(by_hand), rel=1e-6)


@pytest.mark.slow
def test_p53_groks_to_perfect_test_accuracy_on_a_cpu(modular_addition_dir):
    toy = load_toy(modular_addition_dir)
    data = toy.spec.data(toy.config)
    assert toy.config.p == 53 and len(data.test.labels) == 2809 - int(0.95 * 2809)
    assert metrics(toy.model, data.test)["accuracy"] == 1.0
    assert metrics(toy.model, data.train)["accuracy"] == 1.0
    log = [json.loads(line) for line in (modular_addition_dir / "train_log.jsonl").read_text().splitlines()]
    assert log[0]["test_accuracy"] < 0.5 < log[-1]["test_accuracy"]  # it learned during the run, not at init
