"""GET /api/sweeps and /api/sweeps/{name}: the records `lm-saes sweep` stores (lm_saes.sweep.record)."""

from __future__ import annotations

from fastapi import APIRouter

from lm_saes.server.deps import StoreDep, require_sweep
from lm_saes.server.schemas import SweepDetail, SweepSummary
from lm_saes.store.explanations import interpretations
from lm_saes.sweep.record import BASELINE, FAILED, FINISHED, MEMBER

INTERPRETABILITY = "interpretability"  # the metric column: an explainer's mean simulation score

router = APIRouter(prefix="/sweeps", tags=["sweeps"])


@router.get("", response_model=list[SweepSummary])
def list_sweeps(store: StoreDep) -> list[SweepSummary]:
    """Every sweep by name, with how many of its members finished and failed."""
    summaries = []
    for listed in store.sweeps():
        members = [r for r in (store.sweep(listed["name"]) or {}).get("rows", []) if r.get("kind") == MEMBER]
        summaries.append(SweepSummary.model_validate({
            **listed, "n_members": len(members),
            "n_finished": sum(r.get("status") == FINISHED for r in members),
            "n_failed": sum(r.get("status") == FAILED for r in members),
        }))
    return summaries


@router.get("/{name}", response_model=SweepDetail)
def get_sweep(store: StoreDep, name: str) -> SweepDetail:
    """The whole record; each row says whether its dictionary can be browsed (``analyzed``): a
    member is linked to the stored dictionary it names, or else to the one analyzed from its
    directory (`lm-saes analyze` records each dictionary's ``path``); a baseline to
    ``<sweep>.<baseline>`` (which `lm-saes interpret` builds with ``baselines``); ``decomposition``
    says that it is an SPD decomposition (browsed at /decompositions/NAME). Once some rows'
    dictionaries are interpreted, each of them gets the ``interpretability`` metric: the mean
    simulation score of the explainer that interpreted the most rows (``interpretability_explainer``)."""
    record = require_sweep(store, name)
    analyzed = [d for d in store.dictionaries() if d["analyses"]]
    by_name = {d["name"] for d in analyzed}
    decompositions = {d["name"] for d in analyzed if d.get("kind") == "decomposition"}
    by_path = {d["path"]: d["name"] for d in analyzed if "path" in d}
    rows = []
    for row in record.get("rows", []):
        dictionary = row.get("dictionary") or by_path.get(row.get("dictionary_dir"))
        if dictionary is None and row.get("kind") == BASELINE and f"{name}.{row['name']}" in by_name:
            dictionary = f"{name}.{row['name']}"
        rows.append({**row, **({"dictionary": dictionary} if dictionary else {}), "analyzed": dictionary in by_name,
                     "decomposition": dictionary in decompositions})
    explainer, scores = interpretability(store, {r["dictionary"] for r in rows if r["analyzed"]})
    for row in rows:
        if row.get("dictionary") in scores:
            row["metrics"] = {**row.get("metrics", {}), INTERPRETABILITY: scores[row["dictionary"]]}
    metrics = [*record.get("metrics", []), *([INTERPRETABILITY] if scores else [])]
    return SweepDetail.model_validate({**record, "rows": rows, "metrics": metrics,
                                       "interpretability_explainer": explainer})


def interpretability(store, dictionaries: set[str]) -> tuple[str | None, dict[str, float]]:
    """(explainer, dictionary -> its mean simulation score) for the explainer that scored the most of
    ``dictionaries`` on their shown default analysis (ties: the most recently updated)."""
    by_explainer: dict[str, dict[str, float]] = {}
    for summary in interpretations(store):  # most recent first
        run = store.analysis(summary["dictionary"]) if summary["dictionary"] in dictionaries else None
        simulation = summary.get("means", {}).get("simulation")
        if run is None or summary.get("analysis") != "default" or summary.get("analysis_id") != run["id"] \
                or simulation is None:
            continue
        by_explainer.setdefault(summary["explainer"], {}).setdefault(summary["dictionary"], simulation["mean"])
    if not by_explainer:
        return None, {}
    explainer = max(by_explainer, key=lambda e: len(by_explainer[e]))  # max keeps the first (most recent) of ties
    return explainer, by_explainer[explainer]
