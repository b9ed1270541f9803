"""`lm-saes analyze`: every feature of a dictionary analyzed from a 2d activation cache, or from
the model run on the fly (``sources.py``: both yield the same batches of whole contexts).

All features are analyzed at once, a batch of whole contexts at a time, on the GPU when present,
from each batch's codes (``codes.py``: where features fire, never the dense activations):

1. Pass 1 (``statistics.py``): encode each batch, then firing counts, sums and maxima, the
   activation histograms (``histogram.py``) and the exact top contexts with their windows. The
   codes are kept on the host while they fit in ``keep_codes_gb``.
2. Pass 2 (``bands.py``), only when ``n_bands`` and ``per_band`` are set: sample contexts
   uniformly within equal-width bands of each feature's range (0, max], which pass 1 fixed,
   replaying the kept codes (or, when they did not fit, encoding every batch again: the same
   result, at the cost of a second encoder pass).
3. The decoder alone (``decoder.py``): norms, direct logit effects, nearest features.

Memory is bounded whatever the source's size: one batch's activations [batch_size, ctx, d_sae]
plus O(d_sae * (histogram_bins + (top_k + n_bands * per_band) * window)) of kept examples, plus
at most ``keep_codes_gb`` of kept codes on the host.

``analyze_features`` returns a summary and a lazy iterator of feature documents (see
``documents.py`` for the schema); writing them anywhere is the caller's business.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import NamedTuple

import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from lm_saes import __version__
from lm_saes.activations.manifest import read_manifest
from lm_saes.activations.reader import ActivationCache, open_cache
from lm_saes.analysis.bands import BandSamples
from lm_saes.analysis.codes import FiringTokens, KeptBatch, encode_codes
from lm_saes.analysis.contexts import ContextBatch
from lm_saes.analysis.decoder import LogitEffects, TopValues, decoder_norms, logit_effects, nearest_features
from lm_saes.analysis.documents import AnalysisTensors, TokenStrings, band_view, feature_documents, to_cpu
from lm_saes.analysis.sources import CacheSource, ContextSource, ModelSource
from lm_saes.analysis.statistics import FeatureStatistics
from lm_saes.config import AnalyzeConfig, ModelConfig
from lm_saes.data.framing import special_ids
from lm_saes.dictionaries import Dictionary
from lm_saes.errors import CacheError, ModelError
from lm_saes.models.backend import resolve_device

DENSITY_BINS = 20  # bins of the summary's log10 feature-density histogram


class Analysis(NamedTuple):
    summary: dict  # the dictionary-level record (see ``_summary``)
    features: Iterator[dict]  # one document per feature, in index order (schema: documents.py)


class AnalysisInputs(NamedTuple):
    dictionary: Dictionary
    source: ContextSource  # CacheSource or ModelSource
    tokenizer: object  # transformers tokenizer of the source's model
    W_U: Float[Tensor, "d_model vocab"] | None  # the model's unembedding


def load_analysis_inputs(cfg: AnalyzeConfig) -> AnalysisInputs:
    """The dictionary, the source of contexts, and the tokenizer and unembedding of its model
    (the one the cache records, or the one run on the fly)."""
    from lm_saes.models.backend import load_language_model

    dictionary = Dictionary.from_pretrained(cfg.dictionary, device=resolve_device(cfg.device))
    if cfg.on_the_fly is not None:
        lm = load_language_model(cfg.on_the_fly.model)
        source: ContextSource = ModelSource(lm, cfg.on_the_fly)
    else:
        context_size = read_manifest(cfg.cache).context_size
        reads = None if cfg.max_contexts is None else cfg.max_contexts * context_size  # None: every context
        cache = open_cache(cfg.cache, verify="auto", reads=reads)
        model = cache.manifest.config.get("model")
        if not model:
            raise CacheError(f"{cfg.cache}/manifest.json does not record its model; call "
                             "lm_saes.analysis.analyze_features with a tokenizer and W_U yourself")
        source = CacheSource(cache)
        lm = load_language_model(ModelConfig.model_validate({**model, "device": cfg.device}))
    W_U = lm.bridge.W_U.detach().clone()
    return AnalysisInputs(dictionary, source, lm.tokenizer, W_U)


def analyze(cfg: AnalyzeConfig) -> Analysis:
    """Load what ``cfg`` names and analyze it (see ``analyze_features``)."""
    return analyze_features(cfg, *load_analysis_inputs(cfg))


def analyze_features(
    cfg: AnalyzeConfig,
    dictionary: Dictionary,
    source: ContextSource | ActivationCache,
    tokenizer,
    W_U: Float[Tensor, "d_model vocab"] | None = None,
) -> Analysis:
    """The summary and the feature documents. The statistics are computed here, before returning;
    the documents are built lazily, a block of features at a time.

    ``source`` is a ``CacheSource`` or ``ModelSource`` (``sources.py``); a bare 2d
    ``ActivationCache`` is wrapped in a ``CacheSource``.

    ``dictionary`` is moved to ``cfg.device``. Without ``W_U`` (or when the decoder does not
    write to a d_model-wide stream) the documents' logit effects are empty.
    """
    start = time.perf_counter()
    if isinstance(source, ActivationCache):
        source = CacheSource(source)
    _check_inputs(dictionary, source)
    device = resolve_device(cfg.device)
    dictionary = dictionary.to(device).eval()
    specials = special_ids(tokenizer)  # framing tokens (BOS, CLS, SEP): not counted unless include_bos
    with torch.inference_mode():
        empty = _error(source)(f"{source.where}: the analyzed contexts hold no tokens (all padding or BOS)")
        stats, bands = feature_passes(
            cfg, dictionary.d_sae, device, lambda desc: _encoded(cfg, dictionary, source, device, specials, desc), empty)
        W_dec = dictionary.W_dec.detach()
        use_logits = W_U is not None and cfg.n_logits > 0 and W_U.shape[0] == W_dec.shape[1]
        vocab = min(W_U.shape[1], len(tokenizer)) if W_U is not None else 0
        logits = logit_effects(W_dec, W_U[:, :vocab], cfg.n_logits) if use_logits else None
        neighbors = nearest_features(W_dec, cfg.n_neighbors) if cfg.n_neighbors and dictionary.d_sae > 1 else None
        tensors = analysis_tensors(cfg, stats, bands, decoder_norms(W_dec), logits, neighbors)
    summary = _summary(cfg, dictionary, source, stats, use_logits, time.perf_counter() - start)
    return Analysis(summary, feature_documents(tensors, TokenStrings(tokenizer)))


def feature_passes(
    cfg: AnalyzeConfig, d_sae: int, device: torch.device,
    encoded: Callable[[str], Iterable[tuple[ContextBatch, FiringTokens]]], empty: Exception,
) -> tuple[FeatureStatistics, BandSamples | None]:
    """Pass 1 (statistics) and, when ``n_bands`` and ``per_band`` are set, pass 2 (band samples)
    over ``encoded(progress label)``: one pass's batches of contexts with their codes, whatever
    produced them (a dictionary, a decomposition's causal importances). ``empty`` is raised when
    pass 1 saw no analyzed token."""
    stats = FeatureStatistics(d_sae, cfg.top_k, cfg.window, cfg.histogram_bins, device)
    want_bands = bool(cfg.n_bands and cfg.per_band)
    kept = _CodeKeeper(cfg.keep_codes_gb if want_bands else 0.0)
    for batch, fired in encoded("analyze: statistics"):
        stats.update(batch, fired)
        kept.offer(batch, fired)
    if stats.firing.n_tokens == 0:
        raise empty
    bands = None
    if want_bands:
        bands = BandSamples(stats.max_activation, cfg.n_bands, cfg.per_band, cfg.window, cfg.seed, device)
        for batch, fired in (kept.replay(device) if kept.complete else None) or encoded("analyze: bands"):
            bands.update(batch, fired)
    return stats, bands


def _error(source: ContextSource) -> type[CacheError] | type[ModelError]:
    return CacheError if isinstance(source, CacheSource) else ModelError


def _check_inputs(dictionary: Dictionary, source: ContextSource) -> None:
    if source.d_model != dictionary.d_in:
        raise _error(source)(f"{source.where} holds d_model={source.d_model} activations but the dictionary "
                             f"expects d_in={dictionary.d_in}; analyze it on its own input hook")


def _encoded(
    cfg: AnalyzeConfig, dictionary: Dictionary, source: ContextSource, device: torch.device,
    specials: frozenset[int], desc: str,
) -> Iterator[tuple[ContextBatch, FiringTokens]]:
    """One pass over the source: every batch of contexts with its codes."""
    batches = source.batches(cfg.batch_size, device, specials, cfg.include_bos, cfg.max_contexts)
    total = source.n_contexts(cfg.max_contexts)
    with tqdm(total=total, unit="ctx", desc=desc, disable=not cfg.progress, dynamic_ncols=True) as bar:
        for batch in batches:
            yield batch, encode_codes(dictionary, batch)
            bar.update(len(batch.tokens))


class _CodeKeeper:
    """Pass 1's batches kept compactly on the host for pass 2, while they fit in ``budget_gb``."""

    def __init__(self, budget_gb: float) -> None:
        self.budget, self.used = budget_gb * 1e9, 0
        self.batches: list[KeptBatch] | None = [] if budget_gb > 0 else None  # None: gave up

    def offer(self, batch: ContextBatch, fired: FiringTokens) -> None:
        if self.batches is None:
            return
        kept = KeptBatch.keep(batch, fired)
        self.used += kept.nbytes()
        if self.used > self.budget:
            self.batches = None  # pass 2 encodes again
        else:
            self.batches.append(kept)

    @property
    def complete(self) -> bool:
        return self.batches is not None

    def replay(self, device: torch.device) -> Iterator[tuple[ContextBatch, FiringTokens]]:
        return (kept.restore(device) for kept in self.batches)


def analysis_tensors(
    cfg: AnalyzeConfig, stats: FeatureStatistics, bands: BandSamples | None, norms: Tensor,
    logits: LogitEffects | None, neighbors: TopValues | None,
) -> AnalysisTensors:
    d_sae = len(norms)
    return AnalysisTensors(
        n_fired=stats.firing.counts.cpu(),
        n_contexts=stats.contexts_fired.cpu(),
        n_tokens=stats.firing.n_tokens,
        max_activation=stats.max_activation.cpu(),
        mean_activation=stats.mean_activation().cpu(),
        decoder_norm=norms.cpu(),
        top=to_cpu(stats.top.sorted_payload()),
        bands=None if bands is None else to_cpu(band_view(bands.samples.sorted_payload(), d_sae, cfg.n_bands)),
        band_contexts=None if bands is None else bands.band_contexts.view(d_sae, cfg.n_bands).cpu(),
        histogram_counts=stats.histogram.counts.cpu(),
        histogram_upper=stats.histogram.upper().cpu(),
        logits=None if logits is None else LogitEffects(_cpu(logits.positive), _cpu(logits.negative)),
        neighbors=None if neighbors is None else _cpu(neighbors),
        window=cfg.window,
    )


def _cpu(top: TopValues) -> TopValues:
    return TopValues(top.values.cpu(), top.indices.cpu())


def _summary(cfg: AnalyzeConfig, dictionary: Dictionary, source: ContextSource, stats: FeatureStatistics,
             use_logits: bool, seconds: float) -> dict:
    """The dictionary-level record: what was analyzed, from what, and the density histogram."""
    described = source.describe()
    return {
        "name": cfg.name,
        "dictionary": str(Path(cfg.dictionary).resolve()),
        "cache": described["label"],  # the cache's hook directory, or "on the fly: <data path>"
        "model": described["model"],
        "hook": described["hook"],
        "context_size": described["context_size"],
        "kind": dictionary.kind,
        "d_in": dictionary.d_in,
        "d_sae": dictionary.d_sae,
        **firing_summary(stats),
        "logit_effects": "W_dec @ W_U (final layer norm ignored)" if use_logits else None,
        "config": cfg.model_dump(mode="json"),
        "seconds": seconds,
        "lm_saes_version": __version__,
    }


def firing_summary(stats: FeatureStatistics) -> dict:
    """How much was analyzed and how often the features fire: counts, fractions and the density histogram."""
    histogram = stats.firing.density_histogram(DENSITY_BINS)
    return {
        "n_contexts": stats.n_contexts,
        "n_tokens": stats.firing.n_tokens,
        "alive_fraction": stats.firing.alive_fraction(),
        "dead_fraction": stats.firing.dead_fraction(),
        "density_histogram": {"log10_edges": histogram.edges.tolist(), "counts": histogram.counts.tolist(),
                              "dead": histogram.n_dead},
    }
