"""Pretraining a tiny GPT-2 on offline English text, so that every later stage runs without the hub.

Method. The corpus is cut into documents, which are split at random (seeded) into train and
validation sets. A byte-level BPE tokenizer is trained on the train documents only. Each set is
tokenized into one stream, every document followed by the BOS token, and cut into contexts of
``[BOS] + context_size - 1`` stream tokens (the packing of ``lm_saes.data``). A GPT-2 without
dropout is trained on shuffled train contexts with AdamW (betas 0.9/0.95, weight decay on
matrices only), a linear warmup then a cosine decay to zero, and gradient clipping at norm 1.0.
It is evaluated by the mean next-token cross-entropy (nats/token) over every validation context,
next to a unigram baseline: the cross-entropy of the add-one smoothed train-set token
frequencies on the same predicted positions (tokens 1..ctx-1 of each context).

Output directory: the model (safetensors) and tokenizer, ``corpus/{train,val}.jsonl``,
``pretrain_config.json`` and, last and atomically, ``pretrain_metrics.json``. It is a
"language_model" artifact (``lm_saes.artifacts``): a complete directory trained with the same
config is reused, and ``overwrite`` trains the new model beside the old one and swaps it in once
it is complete.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor
from tqdm.auto import tqdm
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

from lm_saes.artifacts import claim, config_identity, write_atomic
from lm_saes.config import DataConfig, PretrainConfig, save_resolved
from lm_saes.data.tokens import build_contexts
from lm_saes.errors import DatasetError
from lm_saes.models.backend import resolve_device
from lm_saes.models.corpus import load_corpus, write_jsonl
from lm_saes.models.tokenizer import train_bpe

CONFIG_NAME = "pretrain_config.json"
METRICS_NAME = "pretrain_metrics.json"
GRAD_CLIP = 1.0
EVAL_BATCH = 64  # contexts per validation forward
UNCOMPARED_FIELDS = {"overwrite", "output_dir"}  # config fields that do not change the model
LANGUAGE_MODEL = "language_model"  # the artifact kind of the output directory


@dataclass(frozen=True)
class PretrainResult:
    """What ``pretrain`` produced.

    model_dir: Hugging Face directory holding the model and its tokenizer.
    val_loss: mean next-token cross-entropy on the validation contexts, nats/token.
    unigram_val_loss: the unigram baseline on the same positions, nats/token.
    train_tokens: tokens the model was trained on (steps x batch_size x context_size).
    steps: optimizer steps.
    seconds: wall time of the whole run (tokenizer, training, evaluation, saving).
    reused: true if a complete run with the same config was found and nothing was trained.
    """

    model_dir: Path
    val_loss: float
    unigram_val_loss: float
    train_tokens: int
    steps: int
    seconds: float
    reused: bool


def pretrain(cfg: PretrainConfig) -> PretrainResult:
    """Train (or reuse) the tiny language model described by ``cfg``; see the module docstring."""
    if claim_model(cfg, effects=False).reused:
        return result_from_metrics(cfg.output_dir, json.loads((cfg.output_dir / METRICS_NAME).read_text()), reused=True)
    start = time.perf_counter()
    train_docs, val_docs = split_train_val(load_corpus(cfg.corpus), cfg.val_fraction, cfg.seed)
    with claim_model(cfg) as output:  # a failed run removes what it wrote; the old model stays
        metrics = _pretrain_into(cfg, output.work, train_docs, val_docs, start)
        output.commit()
    return result_from_metrics(cfg.output_dir, metrics, reused=False)


def claim_model(cfg: PretrainConfig, effects: bool = True):
    """``cfg.output_dir`` as a language-model artifact (see ``lm_saes.artifacts``)."""
    return claim(cfg.output_dir, LANGUAGE_MODEL, config_identity(cfg, UNCOMPARED_FIELDS), replace=cfg.overwrite,
                 reuse=True, legacy=_legacy_identity, effects=effects)


def _legacy_identity(directory: Path) -> dict | None:
    """A complete model written before artifact.json: the identity of its pretrain_config.json."""
    saved = directory / CONFIG_NAME
    if not (directory / METRICS_NAME).is_file() or not saved.is_file():
        return None
    return _compared(json.loads(saved.read_text()))


def _pretrain_into(cfg: PretrainConfig, out: Path, train_docs: list[str], val_docs: list[str], start: float) -> dict:
    """Train the tokenizer and the model into ``out``; the metrics written there last."""
    save_resolved(cfg, out / CONFIG_NAME)
    write_jsonl(train_docs, out / "corpus" / "train.jsonl")
    write_jsonl(val_docs, out / "corpus" / "val.jsonl")
    tokenizer = train_bpe(train_docs, cfg.vocab_size)
    tokenizer.save_pretrained(out)
    train_contexts = encode_contexts(train_docs, tokenizer, cfg.context_size)
    val_contexts = encode_contexts(val_docs, tokenizer, cfg.context_size)

    device = resolve_device(cfg.device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, tokenizer).to(device)
    train_seconds = train(model, train_contexts, cfg, device)
    val_loss = evaluate(model, val_contexts, device)
    counts = torch.bincount(train_contexts[:, 1:].flatten(), minlength=len(tokenizer))
    unigram_loss = unigram_cross_entropy(counts, val_contexts[:, 1:].flatten())
    model.save_pretrained(out)

    train_tokens = cfg.steps * cfg.batch_size * cfg.context_size
    metrics = {
        "val_loss": val_loss,
        "unigram_val_loss": unigram_loss,
        "train_tokens": train_tokens,
        "steps": cfg.steps,
        "seconds": time.perf_counter() - start,
        "tokens_per_second": train_tokens / train_seconds,
    }
    write_atomic(out / METRICS_NAME, (json.dumps(metrics, indent=2) + "\n").encode())
    return metrics


def _compared(config: dict) -> dict:
    return {k: v for k, v in config.items() if k not in UNCOMPARED_FIELDS}


def result_from_metrics(model_dir: Path, metrics: dict, reused: bool) -> PretrainResult:
    fields = ("val_loss", "unigram_val_loss", "train_tokens", "steps", "seconds")
    return PretrainResult(model_dir=model_dir, reused=reused, **{k: metrics[k] for k in fields})


def split_train_val(
    docs: list[str], val_fraction: float, seed: int
) -> tuple[list[str], list[str]]:
    """A seeded random split of ``docs`` into (train, validation), at least one in each."""
    n_val = max(1, round(val_fraction * len(docs)))
    if n_val >= len(docs):
        raise DatasetError(f"the corpus has {len(docs)} document(s): too few to hold some out")
    order = torch.randperm(len(docs), generator=torch.Generator().manual_seed(seed)).tolist()
    val = set(order[:n_val])
    return [d for i, d in enumerate(docs) if i not in val], [docs[i] for i in sorted(val)]


def encode_contexts(
    docs: list[str], tokenizer: PreTrainedTokenizerFast, context_size: int
) -> Int[Tensor, "n ctx"]:
    """Tokenize ``docs`` and pack them as ``generate`` does: ``[BOS] + context_size - 1`` tokens."""
    packing = DataConfig(path="the pretraining corpus", context_size=context_size)
    contexts = build_contexts(docs, tokenizer, packing, tokenizer.pad_token_id)
    return contexts.tokens.long()


def build_model(cfg: PretrainConfig, tokenizer: PreTrainedTokenizerFast) -> GPT2LMHeadModel:
    """A freshly initialised GPT-2 (no dropout) for ``tokenizer``'s vocabulary."""
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=cfg.context_size,
        n_embd=cfg.d_model,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return GPT2LMHeadModel(config)


def next_token_loss(
    logits: Float[Tensor, "batch ctx vocab"], tokens: Int[Tensor, "batch ctx"]
) -> Float[Tensor, ""]:
    """Mean cross-entropy of predicting tokens 1..ctx-1 from the logits at positions 0..ctx-2."""
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), tokens[:, 1:].flatten())


def lr_at(step: int, cfg: PretrainConfig) -> float:
    """Learning rate of step ``step`` (from 0): linear warmup to ``cfg.lr``, cosine decay to 0."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps)
    return cfg.lr * 0.5 * (1.0 + math.cos(math.pi * progress))


def batch_order(n_contexts: int, batch_size: int, steps: int, seed: int) -> Int[Tensor, "steps batch"]:
    """Context indices of every step: consecutive seeded permutations (epochs) of all contexts."""
    generator = torch.Generator().manual_seed(seed)
    epochs = math.ceil(steps * batch_size / n_contexts)
    order = torch.cat([torch.randperm(n_contexts, generator=generator) for _ in range(epochs)])
    return order[: steps * batch_size].view(steps, batch_size)


def decay_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """AdamW parameter groups: matrices (and embeddings) decay; biases and norm gains do not."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def train(
    model: GPT2LMHeadModel, contexts: Int[Tensor, "n ctx"], cfg: PretrainConfig, device: torch.device
) -> float:
    """Run ``cfg.steps`` optimizer steps on ``contexts``; returns the seconds it took."""
    order = batch_order(len(contexts), cfg.batch_size, cfg.steps, cfg.seed)
    optimizer = torch.optim.AdamW(decay_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95))
    tokens_per_step = cfg.batch_size * cfg.context_size
    model.train()
    start = time.perf_counter()
    bar = tqdm(range(cfg.steps), desc="pretrain", unit="step")
    for step in bar:
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, cfg)
        tokens = contexts[order[step]].to(device)  # [batch, ctx]
        loss = next_token_loss(model(tokens).logits, tokens)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        optimizer.step()
        if step % 10 == 0 or step == cfg.steps - 1:
            rate = (step + 1) * tokens_per_step / (time.perf_counter() - start)
            bar.set_postfix(loss=f"{loss.item():.3f}", tok_s=f"{rate:,.0f}")
    return time.perf_counter() - start


@torch.inference_mode()
def evaluate(model: GPT2LMHeadModel, contexts: Int[Tensor, "n ctx"], device: torch.device) -> float:
    """Mean next-token cross-entropy (nats/token) over all ``contexts``."""
    model.eval()
    total = 0.0
    for batch in contexts.split(EVAL_BATCH):
        tokens = batch.to(device)
        total += next_token_loss(model(tokens).logits, tokens).item() * len(tokens)
    return total / len(contexts)


def unigram_cross_entropy(train_counts: Int[Tensor, "vocab"], val_tokens: Int[Tensor, "n"]) -> float:
    """Cross-entropy (nats/token) of ``val_tokens`` under add-one smoothed ``train_counts``."""
    log_probs = torch.log((train_counts.double() + 1) / (train_counts.sum() + len(train_counts)))
    return -log_probs[val_tokens].mean().item()
