"""One torchrun rank of the SPD parallel tests: trains the same decomposition with every layout of 4
ranks (data parallel 4, tensor parallel 4, 2 x 2) into ROOT/<layout>.

    torchrun --nproc-per-node 4 tests/spd/spd_dist_worker.py ROOT TOY_DIR
"""

import sys
from pathlib import Path

from lm_saes.spd.config import load_train_config
from lm_saes.spd.train import train_spd

LAYOUTS = {"dp4": 1, "tp4": 4, "dp2xtp2": 2}  # name -> tensor_parallel (of 4 ranks)


def overrides(toy: Path, out: Path, tensor_parallel: int) -> list[str]:
    """TMS 5-2, untied, with an identity inserted before linear2: every kind of matrix but embeddings."""
    return [f"target.path={toy}", f"output_dir={out}", "steps=12", "batch_size=64", "log_every=4",
            "spd.faithfulness_warmup_steps=5", "eval_examples=256", "progress=false", "device=cpu",
            "spd.tie=[]", 'spd.identity_insertions=["linear2"]', f"tensor_parallel={tensor_parallel}"]


if __name__ == "__main__":
    root, toy = Path(sys.argv[1]), Path(sys.argv[2])
    example = Path(__file__).parents[2] / "examples" / "spd_tms_5-2.toml"
    for name, tp in LAYOUTS.items():
        train_spd(load_train_config(example, overrides(toy, root / name, tp)))
