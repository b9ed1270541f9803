"""`lm-saes sweep`: many dictionaries trained over one read of a cache, measured beside baselines.

    config.py     SweepConfig: the base training config and the search around it
    members.py    the search expanded into named, validated members
    together.py   the members trained on one stream of batches (resumable; failures kept)
    spd.py        SPD decompositions as members: one stream of the target's inputs, their evaluations
    baselines.py  PCA, ICA, neuron and random bases as TopK dictionaries
    measure.py    every member and baseline measured in one pass (lm-saes eval's metrics)
    report.py     rows, Pareto fronts, results.csv / results.json (format: record.py)
    plots.py      L0 vs explained variance / CE loss recovered, PNG and HTML
    analyze.py    chosen members analyzed into the store
    run.py        run_sweep: all of the above, in order
"""
