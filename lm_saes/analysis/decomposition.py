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
- Toy targets whose input is a feature vector (TMS, residual MLPs): ``target_inputs`` inputs drawn
  from the toy's own distribution (seeded by ``seed``), each a context of one position. Each
  example stores the input itself instead of text (``input``: its nonzero features, largest first,
  and their values; ``tokens`` shows them as "f3=0.71 f0=0.12") and the subcomponent's inner
  activation x . V_c beside its causal importance (``inner``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor
from tqdm.auto import tqdm

from lm_saes import __version__
from lm_saes.analysis.analyze import Analysis, analysis_tensors, feature_passes, firing_summary
from lm_saes.analysis.codes import FiringTokens, dense_codes
from lm_saes.analysis.contexts import ContextBatch
from lm_saes.analysis.documents import feature_documents
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


def toy_inputs(decomposition: Decomposition, n: int, seed: int) -> Float[Tensor, "n n_features"]:
    """``n`` inputs from the toy's distribution (a fixed draw of ``seed``)."""
    toy = decomposition.target.toy
    if toy is None or toy.spec.sample is None:
        raise ConfigError(f"{decomposition.directory} decomposes a {decomposition.record['target']['kind']} target; "
                          "target_inputs analyzes decompositions of toys with a feature-vector input (tms, resid_mlp)")
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
    """The summary and the feature documents of ``cfg.dictionary``, an SPD decomposition of a toy,
    on ``cfg.target_inputs`` inputs of its distribution (see the module docstring)."""
    start = time.perf_counter()
    device = resolve_device(cfg.device)
    if decomposition is None:
        decomposition = load_decomposition(cfg.dictionary, device)
    if cfg.target_inputs is None:
        raise ConfigError(f"{cfg.dictionary} is an SPD decomposition: it is analyzed on its target's own inputs; set "
                          "target_inputs=N (e.g. 10000) instead of cache / on_the_fly")
    index = component_index(decomposition)
    threshold = decomposition.model.settings.ci_threshold
    inputs = toy_inputs(decomposition, cfg.target_inputs, cfg.seed)

    def encoded(desc: str) -> Iterator[tuple[ContextBatch, FiringTokens]]:
        with tqdm(total=len(inputs), unit="input", desc=desc, disable=not cfg.progress, dynamic_ncols=True) as bar:
            for batch, x in toy_batches(inputs, device):
                ci = index.flat(decomposition.causal_importances(x))  # [batch, n_features]
                yield batch, importance_codes(batch, ci[:, None, :], threshold)
                bar.update(len(x))

    with torch.inference_mode():
        empty = ConfigError(f"{cfg.dictionary}: target_inputs drew no input")
        stats, bands = feature_passes(cfg, index.total, device, encoded, empty)
        parts = [decomposition.subcomponents(m) for m in index.modules]
        v_norms = torch.cat([p.V.norm(dim=0) for p in parts]).cpu()  # [n_features]
        u_norms = torch.cat([p.U.norm(dim=1) for p in parts]).cpu()
        tensors = analysis_tensors(cfg, stats, bands, v_norms * u_norms, None, None)
        inner = torch.cat([index.flat(decomposition.inner_activations(x)).cpu()
                           for _, x in toy_batches(inputs, device)])  # [n_inputs, n_features]
    strings = InputStrings(inputs.cpu())
    summary = _summary(cfg, decomposition, index, stats, time.perf_counter() - start)
    documents = (_with_components(doc, index, strings, inner, v_norms, u_norms)
                 for doc in feature_documents(tensors, strings))
    return Analysis(summary, documents)


def _with_components(doc: dict, index: ComponentIndex, strings: InputStrings, inner: Tensor, v_norms: Tensor,
                     u_norms: Tensor) -> dict:
    """A feature document with its subcomponent's identity, norms, and each example's input and inner activation."""
    feature = doc["index"]
    doc["module"], doc["component"] = index.locate(feature)
    doc["v_norm"], doc["u_norm"] = float(v_norms[feature]), float(u_norms[feature])
    examples = doc["top_contexts"] + [e for band in doc["quantiles"] for e in band["examples"]]
    for example in examples:
        features, values = strings.active(example["context_id"])
        example["input"] = {"features": features, "values": values}
        example["inner"] = float(inner[example["context_id"], feature])
    return doc


def _summary(cfg: AnalyzeConfig, decomposition: Decomposition, index: ComponentIndex, stats: FeatureStatistics,
             seconds: float) -> dict:
    """The decomposition-level record: what was analyzed, on what, each matrix's live subcomponents."""
    live = (stats.firing.counts > 0).cpu()
    toy = decomposition.target.toy
    return {
        "name": cfg.name,
        "dictionary": str(Path(cfg.dictionary).resolve()),
        "cache": f"{cfg.target_inputs} inputs of the {toy.config.kind} toy (seed {cfg.seed})",
        "model": decomposition.record["target"].get("path"),
        "hook": None,
        "context_size": 1,
        "kind": "decomposition",
        "d_in": None,
        "d_sae": index.total,
        "modules": [{"name": m, "first": first, "C": size, "live": int(live[first:first + size].sum())}
                    for m, first, size in zip(index.modules, index.first, index.sizes)],
        "ci_threshold": decomposition.model.settings.ci_threshold,
        **firing_summary(stats),
        "logit_effects": None,
        "config": cfg.model_dump(mode="json"),
        "seconds": seconds,
        "lm_saes_version": __version__,
    }
