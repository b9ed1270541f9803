"""`lm-saes compare A B`: compare two runs and write ``comparison.json`` and ``comparison.png``.

The output directory is a "comparison" artifact (``lm_saes.artifacts``): cheap to redo, so a run
into a directory holding an earlier comparison replaces it (atomically, once the new one is
written); a directory holding anything else is refused. ``comparison.json``::

    {"kind": "dictionaries" | "decompositions", "a": "/abs/a", "b": "/abs/b",
     "config": {...},                                 the resolved CompareConfig
     "histogram_edges": [-1.0, ..., 1.0],
     "summary": {module: {measure: {"mmcs_a_to_b": .., "mmcs_b_to_a": .., "n_a": .., "n_b": ..}}},
     "modules": {module: {measure: {"n_a": .., "n_b": ..,
                                    "a_to_b": {"mmcs": .., "histogram": [..],
                                               "matches": [{"index": i, "best": j, "cosine": ..}, ...]},
                                    "b_to_a": {...}}}}}

where a dictionary pair has one module, "decoder", with one measure, "direction", and a
decomposition pair has every decomposed matrix with "weight", "U" and "V".
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import NamedTuple

from lm_saes.artifacts import claim, config_identity, write_atomic
from lm_saes.compare.config import CompareConfig
from lm_saes.compare.plot import write_plot
from lm_saes.compare.similarity import histogram_edges
from lm_saes.errors import ConfigError
from lm_saes.models.backend import resolve_device

COMPARISON = "comparison"  # the artifact kind
RESULT_NAME, PLOT_NAME = "comparison.json", "comparison.png"
DICTIONARY, DECOMPOSITION = "dictionary", "decomposition"


class CompareResult(NamedTuple):
    record: dict  # comparison.json (see the module docstring)
    output_dir: Path
    files: list[Path]


def run_kind(path: Path) -> str:
    """Whether ``path`` holds a dictionary or an SPD decomposition (anything else is an error)."""
    from lm_saes.dictionaries.base import CONFIG_NAME
    from lm_saes.dictionaries.saelens import is_saelens_dir
    from lm_saes.spd.directory import is_decomposition

    if not path.is_dir():
        raise ConfigError(f"{path}: no such directory; give a dictionary or SPD decomposition directory")
    if is_decomposition(path):
        return DECOMPOSITION
    if (path / CONFIG_NAME).is_file() or is_saelens_dir(path):
        return DICTIONARY
    raise ConfigError(f"{path} holds neither a dictionary nor an SPD decomposition (no {CONFIG_NAME})")


def compare_runs(cfg: CompareConfig) -> CompareResult:
    kind_a, kind_b = run_kind(cfg.a), run_kind(cfg.b)
    if kind_a != kind_b:
        raise ConfigError(f"cannot compare an SPD decomposition with a dictionary ({cfg.a} is a {kind_a}, {cfg.b} "
                          f"a {kind_b}): compare two dictionaries or two decompositions of the same model")
    device = resolve_device(cfg.device)
    if kind_a == DECOMPOSITION:
        from lm_saes.compare.decompositions import compare_decompositions
        comparisons = compare_decompositions(cfg, device)
    else:
        from lm_saes.compare.dictionaries import compare_dictionaries
        comparisons = compare_dictionaries(cfg, device)
    modules = {module: {measure: c.as_json() for measure, c in per.items()} for module, per in comparisons.items()}
    summary = {module: {measure: {"mmcs_a_to_b": c["a_to_b"]["mmcs"], "mmcs_b_to_a": c["b_to_a"]["mmcs"],
                                  "n_a": c["n_a"], "n_b": c["n_b"]} for measure, c in per.items()}
               for module, per in modules.items()}
    record = {"kind": f"{kind_a}s", "a": str(cfg.a.resolve()), "b": str(cfg.b.resolve()),
              "config": cfg.model_dump(mode="json"), "histogram_edges": histogram_edges(cfg.bins),
              "summary": summary, "modules": modules}
    destination = cfg.destination()
    with claim(destination, COMPARISON, config_identity(cfg, {"output_dir", "device"}), replace=True) as out:
        write_atomic(out.work / RESULT_NAME, (json.dumps(record, indent=2) + "\n").encode())
        write_plot(record, out.work / PLOT_NAME)
        out.commit()
    return CompareResult(record, destination, [destination / RESULT_NAME, destination / PLOT_NAME])


def describe(record: dict) -> list[str]:
    """The summary as aligned lines: module, measure, MMCS both ways and the counts compared."""
    lines = [f"  {'module':<24} {'measure':<10} {'MMCS A->B':>10} {'MMCS B->A':>10} {'n_a':>6} {'n_b':>6}"]
    for module, per in record["summary"].items():
        for measure, s in per.items():
            lines.append(f"  {module:<24} {measure:<10} {s['mmcs_a_to_b']:>10.4f} {s['mmcs_b_to_a']:>10.4f} "
                         f"{s['n_a']:>6} {s['n_b']:>6}")
    return lines
