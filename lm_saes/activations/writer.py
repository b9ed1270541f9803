"""Background shard writing: serialize, checksum, write atomically, record progress.

Writes run on a worker thread so the model's next forward overlaps the disk. Each finished
chunk (its shard for every hook) is appended to a per-rank progress log, fsynced; a chunk in the
log is complete, so a killed run resumes from the last chunk it logged.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import torch
from safetensors.torch import save as safetensors_bytes

from lm_saes.activations.manifest import ShardInfo, shard_name, write_atomic

PROGRESS_DIR = ".generate"  # under the cache root; removed once every manifest is written


def progress_dir(root: Path) -> Path:
    return root / PROGRESS_DIR


def read_progress(root: Path) -> dict[int, dict[str, ShardInfo]]:
    """Completed chunks from every rank's log: chunk index -> hook -> shard."""
    done: dict[int, dict[str, ShardInfo]] = {}
    for log in sorted(progress_dir(root).glob("rank-*.jsonl")):
        for line in log.read_text().splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line cut by a crash: that chunk is simply redone
            shards = {h: ShardInfo.model_validate(s) for h, s in entry["shards"].items()}
            if all((root / h / s.file).is_file() for h, s in shards.items()):
                done[entry["chunk"]] = shards
    return done


class ShardWriter:
    """Writes chunks on a worker thread; at most ``max_pending`` chunks wait in memory."""

    def __init__(self, root: Path, rank: int, max_pending: int = 2):
        self.root = root
        self.log_path = progress_dir(root) / f"rank-{rank}.jsonl"
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lm-saes-writer")
        self._slots = threading.BoundedSemaphore(max_pending)
        self._futures: list[Future] = []

    def submit(
        self, chunk: int, tensors: dict[str, dict[str, torch.Tensor]], ready: torch.cuda.Event | None
    ) -> None:
        """Queue chunk ``chunk``: hook -> shard tensors (host memory, valid once ``ready``)."""
        self._raise_failures()
        self._slots.acquire()
        future = self._pool.submit(self._write_chunk, chunk, tensors, ready)
        future.add_done_callback(lambda _: self._slots.release())
        self._futures.append(future)

    def _write_chunk(self, chunk: int, tensors: dict, ready: torch.cuda.Event | None) -> None:
        if ready is not None:
            ready.synchronize()
        shards = {}
        for hook, hook_tensors in tensors.items():
            blob = safetensors_bytes(hook_tensors)
            write_atomic(self.root / hook / shard_name(chunk), blob)
            shards[hook] = ShardInfo(
                file=shard_name(chunk),
                n_rows=hook_tensors["activations"].shape[0],
                bytes=len(blob),
                sha256=hashlib.sha256(blob).hexdigest(),
            ).model_dump()
        with open(self.log_path, "a") as log:
            log.write(json.dumps({"chunk": chunk, "shards": shards}) + "\n")
            log.flush()
            os.fsync(log.fileno())

    def _raise_failures(self) -> None:
        for future in [f for f in self._futures if f.done()]:
            future.result()
            self._futures.remove(future)

    def close(self) -> None:
        """Wait for every queued chunk; re-raise the first write error."""
        try:
            for future in self._futures:
                future.result()
        finally:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> "ShardWriter":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
