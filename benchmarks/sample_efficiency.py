"""Sample efficiency on known features: MMCS and explained variance against training tokens, every
system at its own default settings, all on the same batches, in one run.

The data is the project's own superposition data of issue 11's shape (``lm_saes.data.synthetic``:
d = 64, 512 true features, about 5 active per sample with power-law frequencies, correlated
groups). For each budget (0.4M, 4M, 20M tokens by default) every system trains from scratch on the
first ``budget`` tokens of the same seeded stream (budgets are separate runs, since schedules
scale with the run):

- lm-saes TopK, BatchTopK, ReLU and JumpReLU through ``lm_saes.train`` at default settings (the
  two penalty variants need their coefficient: ``--l1-coefficient``, ``--l0-coefficient``);
- sae-lens TopK (``TopKTrainingSAE`` + ``SAETrainer`` with its default lr 3e-4, constant);
- EleutherAI sparsify TopK (``SparseCoder``, its default lr 2e-4 / sqrt(m / 2^14), b_dec set to
  the first batch's mean, decoder renormalisation, no AuxK: its trainer's defaults);
- a naive TopK loop (tied start, Adam 1e-3, constant, raw inputs: issue 11's baseline).

Each prints one JSON line: MMCS over the true features, MMCS over all latents, explained
variance on a held-out batch, seconds; a last line sums up lm-saes against the best peer at each
budget. A peer that is not installed is skipped. Run it beside the peers:

    .venv-peers/bin/python benchmarks/sample_efficiency.py                      # ~30 min on 2 cores
    .venv-peers/bin/python benchmarks/sample_efficiency.py --budgets 400000 --systems topk,naive
"""

from __future__ import annotations

import argparse
import itertools
import json
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
from torch import Tensor

from lm_saes.config import SyntheticConfig, TrainConfig
from lm_saes.data.synthetic import batches, features_from_config, settings_from_config
from lm_saes.dictionaries import Dictionary
from lm_saes.evaluation.metrics import dictionary_mmcs, explained_variance, mmcs
from lm_saes.training.train import train

DATA = SyntheticConfig(n_features=512, d_model=64, n_tokens=1, mean_active=5.0, decay=1.0, n_groups=32,
                       correlation=0.3, seed=0)
OURS = ("topk", "batchtopk", "relu", "jumprelu")
PEERS = ("sae_lens", "sparsify", "naive")


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--budgets", default="400000,4000000,20000000", help="training tokens, comma-separated")
    p.add_argument("--systems", default=",".join(OURS + PEERS))
    p.add_argument("--d-sae", type=int, default=1024)
    p.add_argument("--k", type=int, default=8)
    p.add_argument("--batch", type=int, default=1024)
    p.add_argument("--l1-coefficient", type=float, default=1.0, help="lm-saes ReLU")
    p.add_argument("--l0-coefficient", type=float, default=3.0, help="lm-saes JumpReLU (3: MMCS 0.95 at 4M)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    args.budgets = [int(b) for b in args.budgets.split(",")]
    args.systems = args.systems.split(",")
    unknown = set(args.systems) - set(OURS + PEERS)
    if unknown:
        p.error(f"--systems: unknown {sorted(unknown)}; choose from {','.join(OURS + PEERS)}")
    return args


def stream(args: argparse.Namespace) -> Iterator[Tensor]:
    """The seeded training stream every system reads from its start."""
    features = features_from_config(DATA)
    return (x.to(args.device) for x in batches(features, args.batch, seed=1, settings=settings_from_config(DATA)))


def held_out(args: argparse.Namespace) -> Tensor:
    features = features_from_config(DATA)
    return next(batches(features, 8192, seed=2, settings=settings_from_config(DATA))).to(args.device)


# --- the systems: each trains on `tokens` tokens and returns (decoder directions, x -> reconstruction) ---


def lm_saes_system(kind: str) -> Callable:
    def run(args: argparse.Namespace, tokens: int):
        knobs = {"topk": {"k": args.k}, "batchtopk": {"k": args.k}, "relu": {"l1_coefficient": args.l1_coefficient},
                 "jumprelu": {"l0_coefficient": args.l0_coefficient}}[kind]
        out = Path(tempfile.mkdtemp(prefix="sample-efficiency-")) / kind
        cfg = TrainConfig.model_validate({"dictionary": {"kind": kind, "d_sae": args.d_sae, **knobs}, "output_dir": out,
                                          "total_tokens": tokens, "batch_size": args.batch, "progress": False,
                                          "device": args.device})
        train(cfg, batches=stream(args))
        d = Dictionary.from_pretrained(out, device=args.device)
        return d.W_dec.detach(), lambda x: d(x).recon
    return run


def sae_lens_system(args: argparse.Namespace, tokens: int):
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(0)
    sae = TopKTrainingSAE(TopKTrainingSAEConfig(d_in=DATA.d_model, d_sae=args.d_sae, k=args.k, device=args.device))
    defaults = SAETrainerConfig.__dataclass_fields__["lr"].default  # 3e-4, constant, no warmup
    trainer = SAETrainer(SAETrainerConfig(total_training_samples=tokens, train_batch_size_samples=args.batch,
                                          device=args.device, lr=defaults, lr_end=defaults,
                                          n_batches_for_norm_estimate=1), sae, stream(args))
    for x in itertools.islice(stream(args), tokens // args.batch):
        trainer.step(x)
        trainer.n_training_steps += 1
    return sae.W_dec.detach(), lambda x: sae.decode(sae.encode(x))


def sparsify_system(args: argparse.Namespace, tokens: int):
    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(0)
    sc = SparseCoder(DATA.d_model, SparseCoderConfig(num_latents=args.d_sae, k=args.k), device=args.device)
    opt = torch.optim.Adam(sc.parameters(), lr=2e-4 / (args.d_sae / 2**14) ** 0.5)  # its trainer's default
    for step, x in enumerate(itertools.islice(stream(args), tokens // args.batch)):
        if step == 0:
            sc.b_dec.data = x.mean(0)
        sc.set_decoder_norm_to_unit_norm()
        out = sc(x, dead_mask=None)
        out.fvu.backward()
        sc.remove_gradient_parallel_to_decoder_directions()
        opt.step()
        opt.zero_grad()
    sc.set_decoder_norm_to_unit_norm()

    def reconstruct(x: Tensor) -> Tensor:
        acts, indices, _ = sc.encode(x)
        return sc.decode(acts, indices)

    return sc.W_dec.detach(), reconstruct


def naive_system(args: argparse.Namespace, tokens: int):
    torch.manual_seed(0)
    W_dec = torch.randn(args.d_sae, DATA.d_model, device=args.device)
    W_dec = torch.nn.Parameter(W_dec / W_dec.norm(dim=1, keepdim=True))
    W_enc = torch.nn.Parameter(W_dec.detach().T.clone())
    b_enc = torch.nn.Parameter(torch.zeros(args.d_sae, device=args.device))
    b_dec = torch.nn.Parameter(torch.zeros(DATA.d_model, device=args.device))
    opt = torch.optim.Adam([W_enc, W_dec, b_enc, b_dec], lr=1e-3)

    def forward(x: Tensor) -> Tensor:
        pre = (x - b_dec) @ W_enc + b_enc  # [batch, m]
        values, indices = pre.topk(args.k, dim=-1)
        return torch.zeros_like(pre).scatter(-1, indices, values.relu()) @ W_dec + b_dec

    for x in itertools.islice(stream(args), tokens // args.batch):
        loss = (forward(x) - x).pow(2).sum(-1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return W_dec.detach(), forward


SYSTEMS = {**{kind: lm_saes_system(kind) for kind in OURS}, "sae_lens": sae_lens_system,
           "sparsify": sparsify_system, "naive": naive_system}


@torch.no_grad()
def measure(W_dec: Tensor, reconstruct: Callable, x: Tensor, truth: Tensor) -> dict:
    recon = reconstruct(x)  # dictionary_mmcs over every latent: each system's own notion of alive differs
    return {"mmcs": round(mmcs(W_dec, truth), 4), "dictionary_mmcs": round(dictionary_mmcs(W_dec, truth), 4),
            "explained_variance": round(float(explained_variance(recon, x)), 4)}


def main() -> None:
    args = parse_args()
    truth = features_from_config(DATA).directions.to(args.device)
    x = held_out(args)
    results: dict[int, dict[str, dict]] = {b: {} for b in args.budgets}
    for budget in args.budgets:
        for name in args.systems:
            start = time.perf_counter()
            try:
                W_dec, reconstruct = SYSTEMS[name](args, budget)
            except ImportError as e:
                print(json.dumps({"system": name, "tokens": budget, "skipped": f"not installed ({e.name})"}), flush=True)
                continue
            seconds = time.perf_counter() - start
            record = {**measure(W_dec, reconstruct, x, truth), "seconds": round(seconds, 1),
                      "tokens_per_s": round(budget / seconds)}
            results[budget][name] = record
            print(json.dumps({"system": name, "tokens": budget, **record}), flush=True)
    summary = {}
    for budget, by_system in results.items():
        peers = {n: r["mmcs"] for n, r in by_system.items() if n in PEERS}
        ours = {n: r["mmcs"] for n, r in by_system.items() if n in OURS}
        if peers and ours:
            best = max(peers, key=peers.get)
            summary[budget] = {"best_peer": best, "best_peer_mmcs": peers[best],
                               **{f"{n}_minus_best_peer": round(v - peers[best], 4) for n, v in ours.items()}}
    print(json.dumps({"summary": summary, "data": DATA.model_dump(mode="json"), "d_sae": args.d_sae, "k": args.k}))


if __name__ == "__main__":
    main()
