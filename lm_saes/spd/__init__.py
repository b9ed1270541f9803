"""Stochastic parameter decomposition (Bushnaq et al. 2025): a model's matrices as sums of rank-one
subcomponents, each with a learned causal importance, trained by `lm-saes train` (an [spd] config).

    from lm_saes.spd import load_decomposition
    spd = load_decomposition("work/spd/tms_5-2")
"""

from lm_saes.spd.directory import Decomposition, load_decomposition

__all__ = ["Decomposition", "load_decomposition"]
