"""devinterp 2.0.1's LLC of a toy directory; runs under .venv-peers/bin/python (devinterp is no
dependency of lm-saes). Used by tests/llc/test_devinterp.py and benchmarks/llc.py.

    python devinterp_peer.py JOB.json

JOB.json: ``toy`` (a toy directory), ``out`` (the JSON to write) and ``sgld``: step_size,
localization, nbeta (a number), chains, draws, batch_size, seed. Each training example becomes
one row of ``input_ids`` = (a, b, label); devinterp asks for a per-token loss of shape
[batch, 2] (rows of 3 "tokens"), which is the example's cross-entropy in both columns. The
output holds llc_mean, llc_std, llc_per_chain,
init_loss, loss_trace [chains, draws], and the wall and CPU seconds of the llc() call.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from datasets import Dataset
from devinterp.slt.llc import llc

from lm_saes.toys.directory import load_toy


def devinterp_llc(toy_dir: str, sgld: dict) -> dict:
    """devinterp's estimate for the toy at ``toy_dir`` with the ``sgld`` settings of the module docstring."""
    toy = load_toy(toy_dir, device=sgld.get("device", "cpu"))
    train = toy.spec.data(toy.config).train
    rows = torch.cat([train.pairs, train.labels[:, None]], dim=1)  # [n, 3]: a, b, (a + b) mod p
    dataset = Dataset.from_dict({"input_ids": rows.tolist()}).with_format("torch")

    def per_example_loss(model: torch.nn.Module, input_ids: torch.Tensor) -> torch.Tensor:
        logits = model(input_ids[:, :2])
        return F.cross_entropy(logits, input_ids[:, 2], reduction="none")[:, None].expand(-1, 2)  # [batch, 2]

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        start, cpu = time.perf_counter(), time.process_time()
        result = llc(
            toy.model.train(), dataset, observables={}, lr=sgld["step_size"], n_beta=sgld["nbeta"],
            localization=sgld["localization"], num_chains=sgld["chains"], num_draws=sgld["draws"],
            batch_size=sgld["batch_size"], num_burnin_steps=0, init_seed=sgld["seed"], device=sgld.get("device", "cpu"),
            loss_fn=per_example_loss, output_path=Path(tmp) / "samples.zarr",
        )
        seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu
        return {
            "llc_mean": float(result.llc_mean), "llc_std": float(result.llc_std),
            "llc_per_chain": result.llc_per_chain.values.tolist(), "init_loss": float(result.init_loss),
            "loss_trace": result.loss_trace.values.tolist(), "seconds": seconds, "cpu_seconds": cpu_seconds,
        }


def main(job_path: str) -> None:
    job = json.loads(Path(job_path).read_text())
    Path(job["out"]).write_text(json.dumps(devinterp_llc(job["toy"], job["sgld"])))


if __name__ == "__main__":
    main(sys.argv[1])
