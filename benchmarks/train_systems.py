"""The systems benchmarks/train.py times: the peers (sae-lens, sparsify) and a naive dense TopK
SAE, each as a ``System`` (one optimizer step; a batch -> reconstruction and activations)."""

from __future__ import annotations

import argparse
import contextlib
import itertools
from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

from lm_saes.data.synthetic import SyntheticFeatures


class System(NamedTuple):
    step: Callable[[Tensor], object]  # one optimizer step on a [batch, d] batch
    evaluate: Callable[[Tensor], tuple[Tensor, Tensor]]  # batch -> (reconstruction, feature acts)


class Data(NamedTuple):
    pool: list[Tensor]  # [batch, d] training batches on the device, cycled
    held_out: Tensor  # [batch, d] never trained on
    features: SyntheticFeatures
    scale: float  # applied to raw samples so the average norm is sqrt(d)


def lr_at(step: int, args: argparse.Namespace) -> float:
    """The schedule every system follows: linear warmup, then constant (lm-saes' own formula)."""
    return args.lr * min(1.0, (step + 1) / args.lr_warmup)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def autocast(args: argparse.Namespace):
    return torch.autocast(args.device.type, torch.bfloat16) if args.bf16 else contextlib.nullcontext()


def sae_lens_system(args: argparse.Namespace, data: Data) -> System:
    from sae_lens import TopKTrainingSAE, TopKTrainingSAEConfig
    from sae_lens.config import SAETrainerConfig
    from sae_lens.training.sae_trainer import SAETrainer

    torch.manual_seed(args.seed)
    device = str(args.device)
    sae_cfg = TopKTrainingSAEConfig(d_in=args.d, d_sae=args.m, k=args.k, device=device, dtype="float32")
    sae = TopKTrainingSAE(sae_cfg)
    cfg = SAETrainerConfig(
        total_training_samples=args.total_steps * args.batch, train_batch_size_samples=args.batch,
        lr=args.lr, lr_end=args.lr, lr_scheduler_name="constant", lr_warm_up_steps=args.lr_warmup,
        device=device, autocast=args.bf16, n_batches_for_norm_estimate=1,
    )
    trainer = SAETrainer(cfg, sae, itertools.cycle(data.pool))

    def step(x: Tensor) -> None:
        trainer.step(x)  # fit() adds tqdm, wandb and checkpoint checks around this
        trainer.n_training_steps += 1

    def evaluate(x: Tensor) -> tuple[Tensor, Tensor]:
        acts = sae.encode(x)
        return sae.decode(acts), acts

    return System(step, evaluate)


def sparsify_system(args: argparse.Namespace, data: Data) -> System:
    from sparsify import SparseCoder, SparseCoderConfig

    torch.manual_seed(args.seed)
    sc = SparseCoder(args.d, SparseCoderConfig(num_latents=args.m, k=args.k), device=args.device)
    opt = torch.optim.Adam(sc.parameters(), lr=args.lr)
    since_fired = torch.zeros(args.m, dtype=torch.long, device=args.device)
    fired = torch.zeros(args.m, dtype=torch.bool, device=args.device)
    state = {"step": 0}

    def step(x: Tensor) -> None:  # sparsify/trainer.py, fit(), loss_fn="fvu", one SAE
        if state["step"] == 0:
            sc.b_dec.data = x.mean(0)  # its trainer centres b_dec on the first batch
        sc.set_decoder_norm_to_unit_norm()
        out = sc(x, dead_mask=None)  # its own bf16 autocast on CUDA
        fired[out.latent_indices.flatten()] = True
        float(out.fvu.detach())  # the trainer's running average, a host sync every step
        out.fvu.backward()
        sc.remove_gradient_parallel_to_decoder_directions()
        for group in opt.param_groups:
            group["lr"] = lr_at(state["step"], args)
        opt.step()
        opt.zero_grad()
        with torch.no_grad():
            since_fired.add_(len(x))
            since_fired[fired] = 0
            fired.zero_()
        state["step"] += 1

    def evaluate(x: Tensor) -> tuple[Tensor, Tensor]:
        top_acts, top_indices, _ = sc.encode(x)
        acts = torch.zeros(len(x), args.m, device=x.device).scatter_(-1, top_indices, top_acts.float())
        return sc.decode(top_acts, top_indices), acts

    return System(step, evaluate)


def naive_system(args: argparse.Namespace, data: Data) -> System:
    """Dense TopK SAE: dense scatter, dense decoder, no decoder constraint."""
    torch.manual_seed(args.seed)
    W_dec = torch.randn(args.m, args.d, device=args.device)
    W_dec = torch.nn.Parameter(W_dec / W_dec.norm(dim=1, keepdim=True))
    W_enc = torch.nn.Parameter(W_dec.detach().T.clone())
    b_enc = torch.nn.Parameter(torch.zeros(args.m, device=args.device))
    b_dec = torch.nn.Parameter(torch.zeros(args.d, device=args.device))
    opt = torch.optim.Adam([W_enc, W_dec, b_enc, b_dec], lr=args.lr)
    state = {"step": 0}

    def forward(x: Tensor) -> tuple[Tensor, Tensor]:
        pre = (x - b_dec) @ W_enc + b_enc  # [batch, m]
        values, indices = pre.topk(args.k, dim=-1)  # [batch, k]
        acts = torch.zeros_like(pre).scatter(-1, indices, values.relu())
        return acts @ W_dec + b_dec, acts

    def step(x: Tensor) -> None:
        with autocast(args):
            recon, _ = forward(x)
            loss = (recon.float() - x).pow(2).sum(-1).mean()
        loss.backward()
        for group in opt.param_groups:
            group["lr"] = lr_at(state["step"], args)
        opt.step()
        opt.zero_grad(set_to_none=True)
        state["step"] += 1

    return System(step, forward)
