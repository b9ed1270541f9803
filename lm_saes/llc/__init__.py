"""The local learning coefficient (Lau et al. 2023) by vectorised SGLD, and the Fourier analysis of
modular addition. ``lm_saes.llc.stage.run_llc(LLCConfig)`` is `lm-saes llc`; the estimator
(``lm_saes.llc.estimator.estimate_llc``) works on any loss of a parameter dict."""
