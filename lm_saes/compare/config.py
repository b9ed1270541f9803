"""`lm-saes compare A B`: how alike two runs' directions are (two dictionaries, or two SPD
decompositions of the same model).

    lm-saes compare work/dictionaries/topk work/dictionaries/topk-seed1
    lm-saes compare work/spd/tms_5-2 work/spd/tms_5-2-seed1 --set live_only=true --set ci_threshold=0.1
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from lm_saes.config import StrictModel
from lm_saes.validation import DEVICE_PATTERN


class CompareConfig(StrictModel):
    """Which two runs, which of their directions count, and where the result goes."""

    a: Path = Field(description="The first run: a dictionary directory or an SPD decomposition directory.")
    b: Path = Field(description="The second run, of the same kind as `a` (and of the same model, for SPD).")
    output_dir: Path | None = Field(None, description="Where comparison.json and comparison.png go "
                                    "(None: work/compare/<a's name>-vs-<b's name>).")
    live_only: bool = Field(False, description="Compare only the live latents of a dictionary (fired on some of "
                            "`examples` tokens of `cache`) or the live subcomponents of a decomposition (causal "
                            "importance above `ci_threshold` on some of `examples` inputs).")
    ci_threshold: float | None = Field(None, gt=0, lt=1, description="A subcomponent is live when its causal "
                                       "importance exceeds this on some input (None: each decomposition's own "
                                       "spd.ci_threshold). Used with live_only.")
    examples: int = Field(4096, gt=0, description="Inputs the liveness is measured on (with live_only): cached "
                          "tokens for dictionaries; toy inputs, contexts or cached rows for decompositions.")
    batch_size: int = Field(512, gt=0, description="Inputs per batch while measuring liveness.")
    cache: Path | None = Field(None, description="Activations whose firing decides a dictionary latent's liveness "
                               "(None: the cache `a` was trained on). Both dictionaries are measured on it.")
    seed: int = Field(1_234_567, ge=0, description="Seed of the inputs the liveness is measured on.")
    bins: int = Field(40, ge=2, le=1000, description="Histogram bins of the best-match cosines over [-1, 1].")
    device: str = Field("auto", pattern=DEVICE_PATTERN, description="'auto' (CUDA when present), 'cpu', 'cuda'...")

    def destination(self) -> Path:
        """The output directory, resolved."""
        return self.output_dir or Path("work/compare") / f"{self.a.resolve().name}-vs-{self.b.resolve().name}"
