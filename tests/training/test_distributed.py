"""Data, tensor and data x tensor parallel training equal single-process training.

Each case launches real gloo ranks with torchrun (dist_worker.py); every variant trains on the
same fixed batches, split by rows across data-parallel ranks and by features across tensor-
parallel ranks, and the saved (gathered) dictionary must equal the single-process one within
float tolerance (reductions run in a different order).
"""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from dist_worker import VARIANTS, config, whole_batches  # noqa: E402

from lm_saes.dictionaries import Dictionary  # noqa: E402
from lm_saes.dictionaries.parallel import feature_slice  # noqa: E402
from lm_saes.errors import ConfigError  # noqa: E402
from lm_saes.training.mesh import parallel_dims  # noqa: E402
from lm_saes.training.train import train  # noqa: E402

WORKER = Path(__file__).parent / "dist_worker.py"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def single(tmp_path_factory) -> dict[str, Dictionary]:
    root = tmp_path_factory.mktemp("single")
    for variant in VARIANTS:
        train(config(variant, root / variant), batches=whole_batches())
    return {v: Dictionary.from_pretrained(root / v) for v in VARIANTS}


def run_ranks(root: Path, n_procs: int, tensor_parallel: int) -> None:
    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={n_procs}",
           f"--master-port={free_port()}", str(WORKER), str(root), str(tensor_parallel)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


@pytest.mark.slow
@pytest.mark.parametrize("n_procs, tensor_parallel", [(2, 1), (2, 2), (4, 2)], ids=["dp2", "tp2", "dp2xtp2"])
def test_parallel_training_equals_single_process(single, tmp_path, n_procs, tensor_parallel):
    run_ranks(tmp_path, n_procs, tensor_parallel)
    for variant, reference in single.items():
        parallel = Dictionary.from_pretrained(tmp_path / variant)
        for name, expected in reference.state_dict().items():
            torch.testing.assert_close(parallel.state_dict()[name], expected, rtol=1e-4, atol=1e-5,
                                       msg=lambda m: f"{variant}.{name}: {m}")
        assert not (tmp_path / variant / "checkpoint").exists()
        assert (tmp_path / variant / "train_log.jsonl").read_text().count("\n") == 3  # rank 0 only


def test_the_mesh_refuses_degrees_that_do_not_fit(tmp_path):
    cfg = config("topk", tmp_path, tensor_parallel=2)
    assert parallel_dims(cfg, 4, rank=3) == (2, 2, 1)
    with pytest.raises(ConfigError, match="does not divide the 3 processes"):
        parallel_dims(cfg, 3, rank=0)
    odd = cfg.model_copy(update={"tensor_parallel": 3})
    with pytest.raises(ConfigError, match="d_sae=32 is not a multiple of tensor_parallel=3"):
        parallel_dims(odd, 3, rank=0)
    wide_k = config("topk", tmp_path, tensor_parallel=16).model_copy()
    with pytest.raises(ConfigError, match="k=4 exceeds the 2 features of one shard"):
        parallel_dims(wide_k, 16, rank=0)


def test_feature_slices_tile_the_dictionary():
    slices = [feature_slice(32, r, 4) for r in range(4)]
    assert [(s.start, s.stop) for s in slices] == [(0, 8), (8, 16), (16, 24), (24, 32)]
