"""Optional Weights & Biases logging: the same records as train_log.jsonl, when `wandb_project` is set.

wandb is imported only then (it comes with transformer_lens, or `pip install wandb`). Its own
settings apply: `WANDB_MODE=offline` keeps the run on disk, `wandb sync` uploads it later.
"""

from __future__ import annotations

from typing import Any

from lm_saes.errors import ConfigError


class WandbLog:
    def __init__(self, project: str, run_name: str, config: dict[str, Any]) -> None:
        try:
            import wandb
        except ImportError as e:
            raise ConfigError("wandb_project is set but wandb is not installed; `pip install wandb` "
                              "or unset wandb_project") from e
        self.run = wandb.init(project=project, name=run_name, config=config, reinit="finish_previous")

    def __call__(self, record: dict[str, float]) -> None:
        self.run.log({k: v for k, v in record.items() if k != "step"}, step=int(record["step"]))

    def close(self) -> None:
        self.run.finish()
