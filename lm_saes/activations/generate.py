"""`lm-saes generate`: one forward per batch, activations for every hook, one shard per chunk.

Steps: claim the output directory (an "activation_cache" artifact, ``lm_saes.artifacts``: a
complete cache of this config is reused, another artifact refused, ``overwrite`` regenerates
beside the old cache and swaps the new one in when it is complete); tokenize the dataset into
contexts; plan chunks; check the disk; skip chunks a killed run already finished; run the model
over this rank's remaining chunks while a worker thread writes the previous chunk; then rank 0
writes each hook's manifest, last and atomically.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import torch
from tqdm.auto import tqdm

from lm_saes import __version__
from lm_saes.activations.manifest import MANIFEST_NAME, Manifest, read_manifest, write_manifest
from lm_saes.activations.plan import kept_tokens, plan_chunks, shard_bytes_estimate, token_shuffle
from lm_saes.activations.synthetic import SyntheticSource
from lm_saes.activations.writer import ShardWriter, progress_dir, read_progress
from lm_saes.artifacts import PARTIAL, ArtifactDir, claim
from lm_saes.config import GenerateConfig, save_resolved
from lm_saes.data.framing import special_ids
from lm_saes.data.tokens import TokenContexts, build_contexts, load_texts
from lm_saes.distributed import barrier, init_distributed, rank_zero_first
from lm_saes.errors import ConfigError, DiskSpaceError
from lm_saes.models.backend import TORCH_DTYPES, LanguageModel, load_language_model

RUN_ONLY_FIELDS = {"overwrite", "progress", "disk_headroom_gb"}  # do not change the cache's bytes
ACTIVATION_CACHE = "activation_cache"  # the artifact kind of a cache root


class GenerateResult(NamedTuple):
    caches: dict[str, Path]  # hook -> cache directory (open with lm_saes.open_cache)
    n_tokens: int  # activation vectors per hook
    estimated_bytes: int  # what the disk check expected this run to write
    seconds: float  # wall time of the whole call
    loop_seconds: float  # forwards and writes alone (no model loading or tokenization)
    reused: bool  # the cache was already complete; nothing was generated


def generate(cfg: GenerateConfig) -> GenerateResult:
    start = time.perf_counter()
    rank, world_size = init_distributed()
    caches = {hook: cfg.output_dir / hook for hook in cfg.hooks}
    if claim_cache(cfg, effects=False).reused:  # refuses another artifact before the model loads
        if rank == 0:
            print(f"cache already complete at {cfg.output_dir} (set overwrite=true to regenerate)")
        n_tokens = read_manifest(caches[cfg.hooks[0]]).n_tokens
        return GenerateResult(caches, n_tokens, 0, time.perf_counter() - start, 0.0, reused=True)

    source = SyntheticSource(cfg) if cfg.synthetic is not None else ModelSource(cfg)
    output = rank_zero_first(lambda: _prepare_output(cfg, source), lambda: claim_cache(cfg, effects=False))
    with output:  # a run that fails before finishing a chunk removes the directory it created
        need, loop_seconds = _generate_chunks(cfg, output.work, source, rank, world_size)
        if rank == 0:
            _write_manifests(cfg, output.work, source)
            output.commit()
    barrier()
    n_tokens = read_manifest(caches[cfg.hooks[0]]).n_tokens
    return GenerateResult(caches, n_tokens, need, time.perf_counter() - start, loop_seconds, reused=False)


def _generate_chunks(cfg: GenerateConfig, root: Path, source: ModelSource | SyntheticSource, rank: int,
                     world_size: int) -> tuple[int, float]:
    """Write this rank's unfinished chunks into ``root``: the bytes the disk check expected, and the
    seconds the forwards and writes took."""
    done = read_progress(root)
    todo = [i for i in range(source.n_chunks) if i not in done]
    need = sum(source.chunk_bytes(i) for i in todo)
    _check_disk(root, need, cfg.disk_headroom_gb)

    mine = [i for i in todo if i % world_size == rank]
    bar = tqdm(total=sum(source.chunk_tokens(i) for i in mine), unit="tok", unit_scale=True,
               desc=f"generate {cfg.output_dir.name}", disable=not cfg.progress or rank != 0, dynamic_ncols=True)
    loop_start = time.perf_counter()
    with ShardWriter(root, rank) as writer, bar:
        for chunk in mine:
            tensors, ready = source.run_chunk(chunk, bar.update)
            writer.submit(chunk, tensors, ready)
    loop_seconds = time.perf_counter() - loop_start
    barrier()
    return need, loop_seconds


class ModelSource:
    """Activations of a language model over a text dataset, chunk by chunk (see ``plan_chunks``)."""

    def __init__(self, cfg: GenerateConfig) -> None:
        self.cfg = cfg
        self.lm = load_language_model(cfg.model)
        self.lm.check_hooks(cfg.hooks)
        self.widths = self.lm.hook_widths(cfg.hooks)
        self.model_name, self.context_size = cfg.model.name, cfg.data.context_size
        self.contexts = build_contexts(load_texts(cfg.data), self.lm.tokenizer, cfg.data, self.lm.pad_token_id)
        self.n_contexts = len(self.contexts.tokens)
        self.keep = kept_tokens(self.contexts.tokens, self.contexts.mask, special_ids(self.lm.tokenizer))  # [n, ctx]
        self.elem_bytes = TORCH_DTYPES[cfg.dtype].itemsize
        self.plan = plan_chunks(
            self.n_contexts, self.context_size, max(self.widths.values()), self.elem_bytes,
            int(cfg.shard_size_mb * 2**20), shuffle=cfg.shuffle and cfg.layout == "1d", seed=cfg.seed,
        )
        self.n_chunks = len(self.plan.chunks)

    def prepare(self, root: Path) -> None:
        """Nothing to write before the chunks."""

    def chunk_bytes(self, chunk: int) -> int:
        ids = self.plan.chunks[chunk]
        return sum(shard_bytes_estimate(self.cfg.layout, len(ids), int(self.keep[ids].sum()), self.context_size, w,
                                        self.elem_bytes) for w in self.widths.values())

    def chunk_tokens(self, chunk: int) -> int:
        return len(self.plan.chunks[chunk]) * self.context_size

    def run_chunk(self, chunk: int, progress: Callable[[int], object]):
        return _run_chunk(self.lm, self.cfg, self.contexts, self.keep, self.plan.chunks[chunk], chunk, progress)


@torch.inference_mode()
def _run_chunk(
    lm: LanguageModel, cfg: GenerateConfig, contexts: TokenContexts, keep: torch.Tensor,
    context_ids: torch.Tensor, chunk: int, progress: Callable[[int], object],
) -> tuple[dict[str, dict[str, torch.Tensor]], torch.cuda.Event | None]:
    """Every hook's shard tensors for one chunk, copied to (pinned) host memory."""
    out_dtype = TORCH_DTYPES[cfg.dtype]
    parts: dict[str, list[torch.Tensor]] = {h: [] for h in cfg.hooks}
    for batch_ids in context_ids.split(cfg.batch_size):
        acts = lm.run_to_hooks(contexts.tokens[batch_ids].long(), cfg.hooks, out_dtype=out_dtype)
        batch_keep = keep[batch_ids].to(lm.device)
        for hook, act in acts.items():  # act: [batch, ctx, d]
            parts[hook].append(act[batch_keep] if cfg.layout == "1d" else act)
        progress(batch_ids.numel() * cfg.data.context_size)

    if cfg.layout == "1d":
        chunk_keep = keep[context_ids]
        extra = {"tokens": contexts.tokens[context_ids][chunk_keep]}  # [m]
        order = token_shuffle(int(chunk_keep.sum()), cfg.seed, chunk) if cfg.shuffle else None
    else:
        extra = {
            "tokens": contexts.tokens[context_ids],  # [c, ctx]
            "context_ids": context_ids.to(torch.int64),  # [c]
            "mask": contexts.mask[context_ids],  # [c, ctx]
        }
        order = None
    tensors = {}
    for hook, hook_parts in parts.items():
        acts = torch.cat(hook_parts)  # 1d: [m, d]; 2d: [c, ctx, d]
        hook_extra = dict(extra)
        if order is not None:
            acts = acts[order.to(acts.device)]
            hook_extra["tokens"] = extra["tokens"][order]
        tensors[hook] = {"activations": to_host(acts), **hook_extra}
    ready = None
    if lm.device.type == "cuda":
        ready = torch.cuda.Event()
        ready.record()
    return tensors, ready


def to_host(t: torch.Tensor) -> torch.Tensor:
    if t.device.type == "cpu":
        return t.contiguous()
    host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
    return host.copy_(t, non_blocking=True)


def _state_config(cfg: GenerateConfig) -> dict:
    """The fields that decide the cache's bytes (a resumed run must match them)."""
    return cfg.model_dump(mode="json", exclude=RUN_ONLY_FIELDS)


def claim_cache(cfg: GenerateConfig, effects: bool = True) -> ArtifactDir:
    """``cfg.output_dir`` as an activation-cache artifact (see ``lm_saes.artifacts``)."""
    return claim(cfg.output_dir, ACTIVATION_CACHE, {k: v for k, v in _state_config(cfg).items() if k != "output_dir"},
                 replace=cfg.overwrite, reuse=True, legacy=_legacy_identity, effects=effects,
                 resumable=lambda work: bool(read_progress(work)))


def _legacy_identity(root: Path) -> dict | str | None:
    """A cache written before artifact.json: the identity of its resolved config.json when it is
    complete; PARTIAL for an unfinished one (its progress state is checked on resuming)."""
    saved = root / "config.json"
    if (progress_dir(root) / "config.json").is_file():
        return PARTIAL
    if not saved.is_file():
        return None
    config = json.loads(saved.read_text())
    hooks = config.get("hooks") if isinstance(config, dict) else None
    if not isinstance(hooks, list) or not hooks or not all((root / h / MANIFEST_NAME).is_file() for h in hooks):
        return None
    return {k: v for k, v in config.items() if k not in RUN_ONLY_FIELDS | {"output_dir"}}


def _prepare_output(cfg: GenerateConfig, source: ModelSource | SyntheticSource) -> ArtifactDir:
    """Claim the output directory and lay out its hook directories, or resume the unfinished run
    there (rank 0)."""
    output = claim_cache(cfg)
    with output:
        state = progress_dir(output.work) / "config.json"
        if state.is_file() and json.loads(state.read_text()) != _state_config(cfg):
            if cfg.overwrite:  # discard the unfinished run (the artifact rule: nothing finished is there)
                for path in [output.work / h for h in cfg.hooks] + [progress_dir(output.work)]:
                    shutil.rmtree(path, ignore_errors=True)
        if state.is_file() and json.loads(state.read_text()) != _state_config(cfg):
            raise ConfigError(
                f"{output.work} holds an unfinished cache from a different config. Run that config again to "
                "resume it, set overwrite=true to discard it, or choose another output_dir."
            )
        for hook in cfg.hooks:
            (output.work / hook).mkdir(parents=True, exist_ok=True)
            (output.work / hook / MANIFEST_NAME).unlink(missing_ok=True)
        progress_dir(output.work).mkdir(parents=True, exist_ok=True)
        state.write_text(json.dumps(_state_config(cfg), indent=2))
        source.prepare(output.work)
    return output


def _check_disk(root: Path, need: int, headroom_gb: float) -> None:
    """Stop before starting if ``need`` more bytes plus the headroom will not fit."""
    free, gb = shutil.disk_usage(root).free, 2**30
    if need + headroom_gb * gb > free:
        raise DiskSpaceError(
            f"the cache needs {need / gb:.2f} GiB more and disk_headroom_gb={headroom_gb:g} GiB "
            f"must stay free, but {root} has {free / gb:.2f} GiB free. Free space, lower "
            "data.max_tokens, store fewer hooks, or choose another output_dir."
        )


def _write_manifests(cfg: GenerateConfig, root: Path, source: ModelSource | SyntheticSource) -> None:
    done = read_progress(root)
    missing = sorted(set(range(source.n_chunks)) - done.keys())
    if missing:
        raise RuntimeError(f"chunks {missing[:10]} were not written; run generate again to finish")
    for hook in cfg.hooks:
        shards = [done[i][hook] for i in range(source.n_chunks)]
        rows = sum(s.n_rows for s in shards)
        manifest = Manifest(
            lm_saes_version=__version__, model=source.model_name, hook=hook, d_model=source.widths[hook],
            dtype=cfg.dtype, layout=cfg.layout, context_size=source.context_size,
            n_tokens=rows if cfg.layout == "1d" else rows * source.context_size,
            n_contexts=source.n_contexts, shards=shards, config=cfg.model_dump(mode="json"),
        )
        write_manifest(root / hook, manifest)
    save_resolved(cfg, root / "config.json")
    shutil.rmtree(progress_dir(root))
