"""GET /api/sweeps and /api/sweeps/{name}: the records `lm-saes sweep` stores (lm_saes.sweep.record)."""

from __future__ import annotations

from fastapi import APIRouter

from lm_saes.server.deps import StoreDep, require_sweep
from lm_saes.server.schemas import SweepDetail, SweepSummary
from lm_saes.sweep.record import FAILED, FINISHED, MEMBER

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
    directory (`lm-saes analyze` records each dictionary's ``path``)."""
    record = require_sweep(store, name)
    analyzed = [d for d in store.dictionaries() if d["analyses"]]
    by_name = {d["name"] for d in analyzed}
    by_path = {d["path"]: d["name"] for d in analyzed if "path" in d}
    rows = []
    for row in record.get("rows", []):
        dictionary = row.get("dictionary") or by_path.get(row.get("dictionary_dir"))
        rows.append({**row, **({"dictionary": dictionary} if dictionary else {}), "analyzed": dictionary in by_name})
    return SweepDetail.model_validate({**record, "rows": rows})

