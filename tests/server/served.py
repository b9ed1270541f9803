"""Names of what tests/server/conftest.py puts in the store (imported by the tests as `served`)."""

from __future__ import annotations

HOOK = "blocks.1.hook_resid_post"
CTX = 24
D_SAE = 64
NAME = "tiny-sae"  # the analyzed dictionary
BARE = "bare"  # a record with no source and no analysis
BAD_HOOK = "bad-hook"  # a record whose input hook is not in the model
SWEEP = "tiny-sweep"  # a sweep over the same cache (conftest.swept)
SWEPT_MEMBER = "tiny-sweep.topk-k2"  # its first member, analyzed by the sweep
SPD = "tms-spd"  # the full TMS 5-2 decomposition (tests/conftest.py tms_5_2_spd), analyzed (conftest.decomposed)
SHORT_SPD = "tms-spd-short"  # a short SPD run on the same toy, analyzed (conftest.short_decomposed)
LM_SPD = "tiny-spd"  # a 2-step SPD run of the tiny model, analyzed (conftest.lm_decomposed)
