"""`lm-saes analyze` of an SPD decomposition (``lm_saes.spd``): every subcomponent of every
decomposed matrix is a feature whose activation on an input is its causal importance g_c(x), run
through the dictionaries' passes (``analyze.feature_passes``: statistics, histograms, top and band
examples) and stored the same way.

- Features are numbered matrix by matrix in the decomposition's order (``ComponentIndex``):
  subcomponent c of the m-th matrix is feature ``first[m] + c``; its document also carries
  ``module`` and ``component``, ``decoder_norm`` = |V_c| |U_c| (the Frobenius norm of its rank-one
  matrix) and ``v_norm``, ``u_norm``.
- A subcomponent fires on an input where g_c > the decomposition's ``ci_threshold`` (0.1 unless
  trained otherwise): the threshold of its CI-L0 and ``alive`` metrics, so the analysis's live
  features are the decomposition's alive subcomponents.
- Every example stores the subcomponent's inner activation x . V_c beside its causal importance:
  ``inner``, one value per shown token, as ``acts``.
- ``coactivations``: the subcomponents (of any matrix) that fire on the same analyzed tokens most
  often, counted in the statistics pass over every analyzed token (``coactivation.py``).
- A matrix with an input or output of width 2 (TMS 5-2's) gets ``plane`` in the summary: its
  target's feature directions in that plane and each subcomponent's (``plane``).
- Toy targets whose input is a feature vector (TMS, residual MLPs): ``target_inputs`` inputs drawn
  from the toy's own distribution (seeded by ``seed``), each a context of one position. Each
  example stores the input itself instead of text (``input``: its nonzero features, largest first,
  and their values; ``tokens`` shows them as "f3=0.71 f0=0.12").
- Language-model targets: the first ``target_inputs`` contexts of the data the decomposition was
  trained on, built as training built them, with the model's tokenizer; framing tokens (BOS) are
  left out of the statistics unless ``include_bos``, as for a dictionary.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from lm_saes import __version__
from lm_saes.analysis.analyze import Analysis, analysis_tensors, feature_passes, firing_summary
from lm_saes.analysis.coactivation import MAX_FEATURES, CoFiring, top_coactivations
from lm_saes.analysis.codes import FiringTokens, dense_codes
from lm_saes.analysis.contexts import ContextBatch, analyzed_positions
from lm_saes.analysis.documents import FEATURES_PER_BLOCK, TokenStrings, feature_documents
from lm_saes.analysis.statistics import FeatureStatistics
from lm_saes.config import AnalyzeConfig
from lm_saes.errors import ConfigError
from lm_saes.models.backend import resolve_device
from lm_saes.spd.directory import Decomposition, load_decomposition

TOY_BATCH = 4096  # toy inputs per batch (each a context of one position)


class ComponentIndex(NamedTuple):
    """Where each decomposed matrix's subcomponents sit among the analysis's features."""

    modules: list[str]  # in the decomposition's order
    first: list[int]  # feature index of each matrix's subcomponent 0
    sizes: list[int]  # its C

    @property
    def total(self) -> int:
        return sum(self.sizes)

    def flat(self, per_module: dict[str, Float[Tensor, "... C"]]) -> Float[Tensor, "... n_features"]:
        """Per-matrix tensors [..., C] side by side in feature order."""
        return torch.cat([per_module[m] for m in self.modules], dim=-1)

    def locate(self, feature: int) -> tuple[str, int]:
        """(matrix, subcomponent) of a feature index."""
        for module, first, size in zip(self.modules, self.first, self.sizes):
            if feature < first + size:
                return module, feature - first
        raise IndexError(feature)


def component_index(decomposition: Decomposition) -> ComponentIndex:
    sizes = [decomposition.model.plan[m].C for m in decomposition.modules]
    return ComponentIndex(decomposition.modules, np.cumsum([0, *sizes[:-1]]).tolist(), sizes)


def importance_codes(batch: ContextBatch, importances: Float[Tensor, "batch ctx n_features"],
                     threshold: float) -> FiringTokens:
    """The codes of a batch: where a subcomponent's causal importance exceeds ``threshold``."""
    return dense_codes(batch, torch.where(importances > threshold, importances, 0.0))


class DecompositionInputs(NamedTuple):
    """What a decomposition is analyzed on: its target's own inputs, as contexts."""

    inputs: Tensor  # [n, d] toy feature vectors, or [n, ctx] token ids
    batches: Callable[[torch.device], Iterator[tuple[ContextBatch, Tensor]]]  # every context with its model input
    strings: Any  # the documents' token strings: InputStrings or TokenStrings
    label: str  # the summary's "cache": what was analyzed
    model: str | None  # the target model's name or toy directory


def toy_inputs(decomposition: Decomposition, n: int, seed: int) -> Float[Tensor, "n n_features"]:
    """``n`` inputs from the toy's distribution (a fixed draw of ``seed``)."""
    toy = decomposition.target.toy
    if toy.spec.sample is None or toy.config.kind == "induction":
        raise ConfigError(f"{decomposition.directory}: the {toy.config.kind} toy has no feature-vector inputs; "
                          "target_inputs analyzes decompositions of tms and resid_mlp toys and of language models")
    x = toy.spec.sample(toy.config, n, torch.Generator().manual_seed(seed))[0]
    if not x.is_floating_point() or x.dim() != 2:
        raise ConfigError(f"{decomposition.directory}: the {toy.config.kind} toy's inputs are not feature vectors; "
                          "target_inputs analyzes tms and resid_mlp decompositions")
    return x


def toy_batches(inputs: Float[Tensor, "n d"], device: torch.device) -> Iterator[tuple[ContextBatch, Tensor]]:
    """Each input a context of one position whose token id is the input's index."""
    for first in range(0, len(inputs), TOY_BATCH):
        x = inputs[first:first + TOY_BATCH].to(device)  # [batch, d]
        ids = torch.arange(first, first + len(x), device=device)
        every = torch.ones(len(x), 1, dtype=torch.bool, device=device)  # [batch, ctx 1]
        yield ContextBatch(torch.empty(0, device=device), ids[:, None], ids, every, every, first), x


def decomposition_inputs(cfg: AnalyzeConfig, decomposition: Decomposition) -> DecompositionInputs:
    target = decomposition.record["target"]
    if target["kind"] == "language_model":
        return _language_model_inputs(cfg, target)
    if target["kind"] != "toy":
        raise ConfigError(f"{decomposition.directory} decomposes one module from cached activations; analyze a "
                          "decomposition of a toy or of a whole language model")
    inputs = toy_inputs(decomposition, cfg.target_inputs, cfg.seed)
    label = f"{len(inputs)} inputs of the {decomposition.target.toy.config.kind} toy (seed {cfg.seed})"
    return DecompositionInputs(inputs, lambda device: toy_batches(inputs, device), InputStrings(inputs.cpu()), label,
                               target["path"])


def _language_model_inputs(cfg: AnalyzeConfig, target: dict) -> DecompositionInputs:
    from lm_saes.config import DataConfig, ModelConfig
    from lm_saes.data.framing import special_ids
    from lm_saes.data.tokens import build_contexts, load_texts
    from lm_saes.models.backend import load_tokenizer

    model, data = ModelConfig.model_validate(target["model"]), DataConfig.model_validate(target["data"])
    tokenizer = load_tokenizer(model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (tokenizer.eos_token_id or 0)
    built = build_contexts(load_texts(data), tokenizer, data, pad)
    tokens, valid = built.tokens[:cfg.target_inputs].long(), built.mask[:cfg.target_inputs]  # [n, ctx]
    specials = special_ids(tokenizer)

    def batches(device: torch.device) -> Iterator[tuple[ContextBatch, Tensor]]:
        for first in range(0, len(tokens), cfg.batch_size):
            ids = tokens[first:first + cfg.batch_size].to(device)  # [batch, ctx]
            ok = valid[first:first + cfg.batch_size].to(device)
            analyzed = analyzed_positions(ids, ok, specials, cfg.include_bos)
            context_ids = torch.arange(first, first + len(ids), device=device)
            yield ContextBatch(torch.empty(0, device=device), ids, context_ids, ok, analyzed, first), ids

    label = f"on the fly: {len(tokens)} contexts of {data.path}"
    return DecompositionInputs(tokens, batches, TokenStrings(tokenizer), label, str(model.name))


class InputStrings:
    """The ``TokenStrings`` of a toy analysis: an input's index shown as its nonzero features."""

    def __init__(self, inputs: Float[Tensor, "n d"]) -> None:
        self.inputs = inputs

    def active(self, index: int) -> tuple[list[int], list[float]]:
        """The input's nonzero features, largest magnitude first, and their values."""
        row = self.inputs[index]
        nonzero = row.nonzero().flatten()
        order = row[nonzero].abs().argsort(descending=True, stable=True)
        features = nonzero[order]
        return features.tolist(), row[features].tolist()

    def __call__(self, index: int) -> str:
        features, values = self.active(index)
        return " ".join(f"f{f}={v:.2f}" for f, v in zip(features, values)) or "(no feature on)"

    def of(self, ids: Tensor) -> list:
        table = np.array([None if i < 0 else self(i) for i in ids.flatten().tolist()], dtype=object)
        return table.reshape(tuple(ids.shape)).tolist()


def analyze_decomposition(cfg: AnalyzeConfig, decomposition: Decomposition | None = None) -> Analysis:
    """The summary and the feature documents of ``cfg.dictionary``, an SPD decomposition, on
    ``cfg.target_inputs`` inputs of its target (see the module docstring)."""
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    if decomposition is None:
        decomposition = load_decomposition(cfg.dictionary, device)
    if cfg.target_inputs is None:
        raise ConfigError(f"{cfg.dictionary} is an SPD decomposition: it is analyzed on its target's own inputs; set "
                          "target_inputs=N (e.g. 10000) instead of cache / on_the_fly")
    index = component_index(decomposition)
    threshold = decomposition.model.settings.ci_threshold
    source = decomposition_inputs(cfg, decomposition)

    cofiring = CoFiring(index.total, device) if index.total <= MAX_FEATURES else None
    passes = itertools.count()

    def encoded(desc: str) -> Iterator[tuple[ContextBatch, FiringTokens]]:
        first_pass = next(passes) == 0  # the statistics pass: every analyzed token once
        with tqdm(total=len(source.inputs), unit="ctx", desc=desc, disable=not cfg.progress, dynamic_ncols=True) as bar:
            for batch, x in source.batches(device):
                ci = index.flat(decomposition.causal_importances(x)).view(*batch.tokens.shape, -1)  # [batch, ctx, n]
                if first_pass and cofiring is not None:
                    cofiring.update(((ci > threshold) & batch.analyzed[..., None]).flatten(0, 1))  # [tokens, n]
                yield batch, importance_codes(batch, ci, threshold)
                bar.update(len(x))

    with torch.inference_mode():
        empty = ConfigError(f"{cfg.dictionary}: the {source.label} hold no analyzed token")
        stats, bands = feature_passes(cfg, index.total, device, encoded, empty)
        parts = [decomposition.subcomponents(m) for m in index.modules]
        v_norms = torch.cat([p.V.norm(dim=0) for p in parts]).cpu()  # [n_features]
        u_norms = torch.cat([p.U.norm(dim=1) for p in parts]).cpu()
        tensors = analysis_tensors(cfg, stats, bands, v_norms * u_norms, None, None)
    coactivations = top_coactivations(cofiring.counts) if cofiring is not None else None
    summary = _summary(cfg, decomposition, index, source, stats, time.perf_counter() - start)

    def inner(context_ids: list[int]) -> Float[Tensor, "n ctx n_features"]:
        x = source.inputs[context_ids].to(device)
        with torch.inference_mode():
            acts = index.flat(decomposition.inner_activations(x)).cpu()
        return acts.view(len(context_ids), -1, index.total)

    documents = (_with_component(doc, index, v_norms, u_norms, source.strings, coactivations)
                 for doc in feature_documents(tensors, source.strings))
    return Analysis(summary, with_inner_activations(documents, inner, cfg.batch_size))


def _with_component(doc: dict, index: ComponentIndex, v_norms: Tensor, u_norms: Tensor, strings: Any,
                    coactivations: list[list[dict]] | None) -> dict:
    """A feature document with its subcomponent's identity, norms and co-activating subcomponents
    (and, for a toy, each example's input)."""
    feature = doc["index"]
    doc["module"], doc["component"] = index.locate(feature)
    doc["v_norm"], doc["u_norm"] = float(v_norms[feature]), float(u_norms[feature])
    if coactivations is not None:
        doc["coactivations"] = [{**c, **dict(zip(("module", "component"), index.locate(c["index"])))}
                                for c in coactivations[feature]]
    if isinstance(strings, InputStrings):
        for example in _examples(doc):
            features, values = strings.active(example["context_id"])
            example["input"] = {"features": features, "values": values}
    return doc


def _examples(doc: dict) -> list[dict]:
    return doc["top_contexts"] + [e for band in doc["quantiles"] for e in band["examples"]]


def with_inner_activations(documents: Iterator[dict], inner: Callable[[list[int]], Tensor],
                           batch_size: int) -> Iterator[dict]:
    """The documents with each example's ``inner``: the feature's inner activation on every shown
    token, from ``inner(context ids)`` [n, ctx, n_features], run a block of documents at a time
    over the contexts their examples come from, ``batch_size`` contexts at once."""
    while block := list(itertools.islice(documents, FEATURES_PER_BLOCK)):
        wanted = [(doc["index"], e) for doc in block for e in _examples(doc)]
        ids = sorted({e["context_id"] for _, e in wanted})
        row = {context_id: i for i, context_id in enumerate(ids)}
        by_chunk: dict[int, list[tuple[int, dict]]] = {}
        for feature, e in wanted:
            by_chunk.setdefault(row[e["context_id"]] // batch_size, []).append((feature, e))
        for chunk, examples in by_chunk.items():
            acts = inner(ids[chunk * batch_size:(chunk + 1) * batch_size])  # [chunk's contexts, ctx, n_features]
            for feature, e in examples:
                i = row[e["context_id"]] - chunk * batch_size
                e["inner"] = acts[i, e["start"]:e["start"] + len(e["tokens"]), feature].tolist()
        yield from block


def _summary(cfg: AnalyzeConfig, decomposition: Decomposition, index: ComponentIndex, source: DecompositionInputs,
             stats: FeatureStatistics, seconds: float) -> dict:
    """The decomposition-level record: what was analyzed, on what, each matrix's live subcomponents."""
    live = (stats.firing.counts > 0).cpu()
    return {
        "name": cfg.name,
        "dictionary": str(Path(cfg.dictionary).resolve()),
        "cache": source.label,
        "model": source.model,
        "hook": None,
        "context_size": 1 if source.inputs.is_floating_point() else source.inputs.shape[1],
        "kind": "decomposition",
        "d_in": None,
        "d_sae": index.total,
        "modules": [{"name": m, "first": first, "C": size, "live": int(live[first:first + size].sum()),
                     **({"plane": p} if (p := plane(decomposition, m)) is not None else {})}
                    for m, first, size in zip(index.modules, index.first, index.sizes)],
        "ci_threshold": decomposition.model.settings.ci_threshold,
        **firing_summary(stats),
        "logit_effects": None,
        "config": cfg.model_dump(mode="json"),
        "seconds": seconds,
        "lm_saes_version": __version__,
    }


def plane(decomposition: Decomposition, module: str) -> dict | None:
    """For a matrix W [d_in, d_out] (x @ W) with d_out == 2 (or d_in == 2): ``target``, the 2-d direction
    of each of the other side's features (row i of W, or column i), and for each subcomponent
    (``components``, in order) its own rank-one matrix's direction for the feature it weighs most
    (V[i, c] U[c] with i = argmax |V[:, c]|, or U[c, i] V[:, c]) and that ``feature``; None for
    other matrices."""
    W = decomposition.model.weight(module).detach().float().cpu()  # [d_in, d_out]
    parts = decomposition.subcomponents(module)
    V, U = parts.V.float().cpu(), parts.U.float().cpu()  # [d_in, C], [C, d_out]
    if W.shape[1] == 2:
        feature = V.abs().argmax(dim=0)  # [C]: each subcomponent's strongest input
        directions = V[feature, torch.arange(V.shape[1])][:, None] * U  # [C, 2]
        target = W  # [d_in, 2]
    elif W.shape[0] == 2:
        feature = U.abs().argmax(dim=1)  # [C]: each subcomponent's strongest output
        directions = U[torch.arange(U.shape[0]), feature][:, None] * V.T  # [C, 2]
        target = W.T  # [d_out, 2]
    else:
        return None
    return {"target": target.tolist(), "components": directions.tolist(), "feature": feature.tolist()}
