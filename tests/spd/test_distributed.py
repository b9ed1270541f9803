"""Data, tensor and data x tensor parallel SPD equal one process: real gloo ranks under torchrun, the
same batches and masks (drawn whole, each rank keeping its rows and subcomponents), the saved
(gathered) decomposition equal within float tolerance."""

import json
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from lm_saes.errors import ConfigError
from lm_saes.spd.config import load_train_config
from lm_saes.spd.train import spd_dims, train_spd

from tests.spd.spd_dist_worker import LAYOUTS, overrides

WORKER = Path(__file__).parent / "spd_dist_worker.py"
EXAMPLE = Path(__file__).parents[2] / "examples" / "spd_tms_5-2.toml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_parallel_decompositions_equal_one_process(tms_5_2_dir, tmp_path):
    train_spd(load_train_config(EXAMPLE, overrides(tms_5_2_dir, tmp_path / "single", 1)))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node=4", f"--master-port={free_port()}",
           str(WORKER), str(tmp_path), str(tms_5_2_dir)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    reference = load_file(tmp_path / "single" / "weights.safetensors")
    assert "components.linear2.pre_identity.V" in reference
    for layout in LAYOUTS:
        weights = load_file(tmp_path / layout / "weights.safetensors")
        assert weights.keys() == reference.keys()
        for name, expected in reference.items():
            torch.testing.assert_close(weights[name], expected, rtol=1e-4, atol=1e-5, msg=lambda m: f"{layout} {name}: {m}")
        assert not (tmp_path / layout / "checkpoint").exists()
        steps = [json.loads(line)["step"] for line in (tmp_path / layout / "train_log.jsonl").read_text().splitlines()]
        assert steps == [4, 8, 12]  # rank 0 alone writes the log
        alive = json.loads((tmp_path / layout / "metrics.json").read_text())["eval"]["alive"]
        assert alive == json.loads((tmp_path / "single" / "metrics.json").read_text())["eval"]["alive"]


def test_the_mesh_refuses_what_does_not_split(tms_5_2_dir, tmp_path):
    cfg = load_train_config(EXAMPLE, overrides(tms_5_2_dir, tmp_path, 3))
    with pytest.raises(ConfigError, match="spd.C=20 is not a multiple of tensor_parallel=3"):
        spd_dims(cfg, 6, 0)
    odd_batch = load_train_config(EXAMPLE, overrides(tms_5_2_dir, tmp_path, 2) + ["batch_size=63"])
    with pytest.raises(ConfigError, match="batch_size=63 does not split over data_parallel=2"):
        spd_dims(odd_batch, 4, 0)
    assert spd_dims(load_train_config(EXAMPLE, overrides(tms_5_2_dir, tmp_path, 2)), 4, 3) == (2, 2, 1)
