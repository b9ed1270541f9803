"""The activation cache's contract: one directory per hook point, shards, and ``manifest.json``.

Layout of one hook directory::

    <output_dir>/<hook>/shard-00000.safetensors ...   written by generate, one per chunk
    <output_dir>/<hook>/manifest.json                 written last and atomically

Shard tensors:
    1d: ``activations`` [n, d_model], ``tokens`` [n] (int32): shuffled tokens, no BOS or padding.
    2d: ``activations`` [n, ctx, d_model], ``tokens`` [n, ctx] (int32), ``context_ids`` [n]
        (int64, position of the context in the dataset's token stream), ``mask`` [n, ctx] (bool,
        false on padding).

A directory without ``manifest.json`` is an unfinished cache and is never read as complete.
``check_shards`` verifies the shards against the manifest when a stage opens a cache: sizes
always, sha256 checksums (hashed in parallel threads) where the stage reads the whole cache.
"""

from __future__ import annotations

import hashlib
import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from lm_saes.artifacts import write_atomic
from lm_saes.errors import CacheError

MANIFEST_NAME = "manifest.json"
FORMAT_VERSION = 1
HASH_THREADS = min(8, os.cpu_count() or 1)  # hashlib releases the GIL: shards hash in parallel
REGENERATE = "regenerate the cache (run `lm-saes generate` again with overwrite = true)"
Verify = Literal["sha256", "size"]


class ShardInfo(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str  # name relative to the hook directory
    n_rows: int  # 1d: tokens; 2d: contexts
    bytes: int  # file size
    sha256: str


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    format_version: int = FORMAT_VERSION
    lm_saes_version: str
    model: str
    hook: str
    d_model: int
    dtype: str  # "bfloat16" | "float16" | "float32"
    layout: Literal["1d", "2d"]
    context_size: int
    n_tokens: int  # activation vectors stored: 1d rows, or 2d contexts x context_size
    n_contexts: int  # contexts that produced them
    shards: list[ShardInfo]
    config: dict[str, Any]  # the resolved GenerateConfig


def shard_name(chunk_index: int) -> str:
    return f"shard-{chunk_index:05d}.safetensors"


def file_sha256(path: Path, block_bytes: int = 1 << 24) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(block_bytes):
            digest.update(block)
    return digest.hexdigest()


def write_manifest(hook_dir: Path, manifest: Manifest) -> None:
    write_atomic(hook_dir / MANIFEST_NAME, (manifest.model_dump_json(indent=2) + "\n").encode())


def read_manifest(hook_dir: Path) -> Manifest:
    """Read a hook directory's manifest, or explain why this is not a complete cache."""
    hook_dir = Path(hook_dir)
    path = hook_dir / MANIFEST_NAME
    if not hook_dir.is_dir():
        raise CacheError(f"no activation cache at {hook_dir}: the directory does not exist")
    if not path.is_file():
        subdirs = sorted(p.name for p in hook_dir.iterdir() if (p / MANIFEST_NAME).is_file())
        if subdirs:
            raise CacheError(
                f"{hook_dir} holds one cache per hook point; open one of: "
                + ", ".join(str(hook_dir / s) for s in subdirs)
            )
        raise CacheError(
            f"{hook_dir} has no {MANIFEST_NAME}: its generation did not finish. Run the same "
            "`lm-saes generate` config again to resume it."
        )
    try:
        return Manifest.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as e:
        raise CacheError(f"{path} is corrupt ({e}); regenerate the cache") from e


def check_shards(hook_dir: Path, manifest: Manifest, verify: Verify) -> None:
    """Raise ``CacheError`` naming the shard unless every shard the manifest lists exists with its
    recorded size and, for ``verify="sha256"``, its recorded checksum."""
    if verify not in ("size", "sha256"):
        raise ValueError(f"verify must be 'size' or 'sha256', not {verify!r}")
    paths = [Path(hook_dir) / shard.file for shard in manifest.shards]
    for path, shard in zip(paths, manifest.shards):
        if not path.is_file():
            raise CacheError(f"shard {path} is missing; {REGENERATE}")
        size = path.stat().st_size
        if size != shard.bytes:
            raise CacheError(
                f"shard {path} has {size} bytes but the manifest records {shard.bytes} (truncated?); " + REGENERATE
            )
    if verify == "sha256" and paths:
        with ThreadPoolExecutor(min(HASH_THREADS, len(paths)), thread_name_prefix="lm-saes-sha256") as pool:
            for path, shard, digest in zip(paths, manifest.shards, pool.map(file_sha256, paths)):
                if digest != shard.sha256:
                    raise CacheError(f"shard {path} does not match the sha256 its manifest records (the shard "
                                     f"is corrupt or the manifest was edited); {REGENERATE}")
