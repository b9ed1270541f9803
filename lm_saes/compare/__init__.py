"""`lm-saes compare A B`: the geometric similarity of two runs' directions.

    config.py          CompareConfig: the two runs, the liveness thresholds, the output directory
    similarity.py      best matches, MMCS both ways, histograms (pure functions)
    dictionaries.py    two dictionaries by their decoder directions
    decompositions.py  two SPD decompositions of one model, module by module (U V^T, U, V)
    plot.py            the histograms as a PNG
    stage.py           compare_runs: all of the above into comparison.json and comparison.png
"""
