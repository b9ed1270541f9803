"""The sweep's record: one document in the store's ``sweeps`` collection, also ``results.json``.

    {
      "name": "quickstart-sweep",            the sweep's name (SweepConfig.name)
      "output_dir": "/abs/path/to/sweep",    members/<member>/ are the dictionary directories
      "status": "complete" | "running",      running while members are still training
      "varied": ["k", "lr"],                 the swept fields' column labels, in table order
      "paths": {"k": "dictionary.k", "lr": "lr"},     each label's dotted field path
      "metrics": ["l0", "explained_variance", ...],   metric columns, in table order
      "frontiers": {"explained_variance": "explained variance", ...}  plotted against L0 (FRONTIERS)
      "x": "ci_l0",                          only in a decomposition sweep: the fronts' other axis
                                             (CI-L0; its front is reconstruction, lower is better)
      "rows": [
        {"name": "topk-k16", "kind": "member", "variant": "topk",
         "status": "finished" | "failed" | "pending",
         "params": {"k": 16, "lr": 0.0004},      this member's values of `varied` (by label:
                                                 MongoDB field names hold no dots)
         "metrics": {"l0": 15.9, "explained_variance": 0.82, ...},   left out unless finished
         "frontier": ["explained_variance"],      the Pareto fronts (L0 vs metric) it lies on
         "error": "...",                          only when failed
         "dictionary_dir": "/abs/.../members/topk-k16",
         "config": {...}},                        the member's whole TrainConfig (JSON)
        {"name": "pca-l0-16", "kind": "baseline", "variant": "pca", "status": "finished",
         "params": {"l0": 16}, "metrics": {...}, "frontier": []},
        ...
      ]
    }

Optional fields are left out rather than null (see lm_saes.store.schema). The frontiers are
computed over the finished members only; baselines are plotted beside them for comparison.
"""

from __future__ import annotations

# Pareto fronts: lower L0 and higher metric are both better.
FRONTIERS = {"explained_variance": "explained variance", "ce_loss_recovered": "CE loss recovered",
             "mmcs": "MMCS"}  # MMCS when the cache has ground truth (a synthetic cache)
MEMBER, BASELINE = "member", "baseline"
FINISHED, FAILED, PENDING = "finished", "failed", "pending"
