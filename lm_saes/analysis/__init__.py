"""Streaming statistics of every feature of a dictionary, from a 2d activation cache or the model.

    summary, docs = analyze(AnalyzeConfig(dictionary=..., cache=...))
    for doc in docs: ...  # one plain JSON-able dict per feature (schema in documents.py)

No database code here: the store writes what this yields.
"""

from lm_saes.analysis.analyze import Analysis, AnalysisInputs, analyze, analyze_features, load_analysis_inputs

__all__ = ["Analysis", "AnalysisInputs", "analyze", "analyze_features", "load_analysis_inputs"]
