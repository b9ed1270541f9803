"""The local training log: a JSONL file and a progress bar, always; nothing leaves the machine."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

SHOWN = {"loss": "loss", "l0": "L0", "explained_variance": "EV", "dead_fraction": "dead", "aux": "aux", "mmcs": "MMCS"}


class TrainingLog:
    def __init__(self, path: Path, total: int, initial: int, show: bool, count: str = "tokens", **bar: Any) -> None:
        """The bar counts ``record[count]`` (tokens, or steps) up to ``total``; ``bar``: more tqdm
        arguments (a sweep gives each member its ``desc`` and ``position``)."""
        self.path, self.count = path, count
        self.bar = tqdm(**{"desc": "train", "unit": "tok", **bar}, total=total, initial=initial, unit_scale=True,
                        disable=not show, dynamic_ncols=True)
        self._done = initial

    def __call__(self, record: dict[str, float]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.bar.update(record[self.count] - self._done)
        self._done = record[self.count]
        self.bar.set_postfix({name: f"{record[key]:.4g}" for key, name in SHOWN.items() if key in record})

    def close(self) -> None:
        self.bar.close()
