"""The superposition replication (Sharkey, Braun and Millidge 2022) on a small ground-truth cache:
over dictionary size x L1 coefficient, the MMCS with the true features peaks at a dictionary at
least as large as the true feature count and at an intermediate L1 (too little: dense, mixed
latents; too much: everything shrinks to zero). The same shape of result as
examples/replicate_superposition.toml, at 32 features in 12 dimensions."""

from __future__ import annotations

import csv

import pytest

from lm_saes.cli import main

N_FEATURES = 32
SIZES = (16, 32, 64)
L1S = (0.3, 3.0, 30.0)

GENERATE = f"""
output_dir = "{{out}}/syn"
[synthetic]
n_features = {N_FEATURES}
d_model = 12
n_tokens = 100_000
mean_active = 2.0
decay = 0.5
n_groups = 4
correlation = 0.2
noise = 0.02
seed = 0
"""

SWEEP = f"""
name = "replication-small"
output_dir = "{{out}}/sweep"
[train]
cache = "{{out}}/syn/synthetic"
total_tokens = 100_000
batch_size = 256
progress = false
device = "cpu"
[variants.relu]
set = {{ dictionary = {{ kind = "relu", d_sae = 32, l1_coefficient = 1.0 }} }}
grid = {{ "dictionary.d_sae" = {list(SIZES)}, "dictionary.l1_coefficient" = {list(L1S)} }}
[eval]
tokens = 16_384
"""


@pytest.mark.slow
def test_mmcs_peaks_at_enough_latents_and_an_intermediate_l1(tmp_path):
    (tmp_path / "generate.toml").write_text(GENERATE.replace("{out}", str(tmp_path)))
    (tmp_path / "sweep.toml").write_text(SWEEP.replace("{out}", str(tmp_path)))
    assert main(["generate", str(tmp_path / "generate.toml")]) == 0
    assert main(["sweep", str(tmp_path / "sweep.toml")]) == 0

    sweep = tmp_path / "sweep"
    rows = [r for r in csv.DictReader(open(sweep / "results.csv")) if r["kind"] == "member"]
    assert len(rows) == len(SIZES) * len(L1S)
    for metric in ("mmcs", "dictionary_mmcs"):
        best = max(rows, key=lambda r: float(r[metric]))
        assert int(best["d_sae"]) >= N_FEATURES, (metric, best)
        assert float(best["l1_coefficient"]) not in (min(L1S), max(L1S)), (metric, best)
        assert (sweep / f"heatmap_relu_{metric}.png").stat().st_size > 0
