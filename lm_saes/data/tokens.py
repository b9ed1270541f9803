"""Text datasets to fixed-length token contexts.

Local files and hub names go through the same ``datasets.load_dataset`` call. Contexts are
framed as the model expects (``framing.py``: ``[BOS] text`` for GPT-2 and Llama-style models,
``[CLS] text [SEP]`` for BERT-style encoders) and built in one of two ways:

- packing: documents are concatenated, each followed by a separator (SEP, or BOS), and the
  stream is cut into contexts; with ``prepend_bos`` each context is ``start + body + end``
  (e.g. ``[BOS] + ctx-1 tokens``).
- no packing: one context per document, ``start +`` its first tokens ``+ end``, right-padded;
  ``mask`` is false on padding. Right padding needs no attention mask for a causal model: its
  real tokens never attend to later positions (an encoder's do: pack its contexts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator, NamedTuple

import numpy as np
import torch
from jaxtyping import Bool, Int
from torch import Tensor

from lm_saes.config import DataConfig
from lm_saes.data.framing import ContextFrame, context_frame
from lm_saes.errors import DatasetError

BUILDERS = {".json": "json", ".jsonl": "json", ".txt": "text", ".parquet": "parquet", ".csv": "csv"}
TOKENIZE_BATCH = 256  # documents per tokenizer call


class TokenContexts(NamedTuple):
    tokens: Int[Tensor, "n ctx"]  # int32 token ids
    mask: Bool[Tensor, "n ctx"]  # false on padding


def load_texts(cfg: DataConfig) -> Iterable[str]:
    """The dataset's text column, from a local file/directory or the hub."""
    import datasets

    path = Path(cfg.path).expanduser()
    kwargs = dict(split=cfg.split, streaming=cfg.streaming)
    if path.suffix in BUILDERS or cfg.path.startswith((".", "/", "~")) or path.exists():
        if not path.exists():
            raise DatasetError(f"data.path={cfg.path!r}: no such file or directory ({path.resolve()})")
        if path.is_file():
            ds = datasets.load_dataset(BUILDERS.get(path.suffix, "text"), data_files=str(path), **kwargs)
        else:
            ds = datasets.load_dataset(str(path), **kwargs)
    else:
        try:
            ds = datasets.load_dataset(cfg.path, cfg.name, **kwargs)
        except Exception as e:  # the hub raises many types; all mean "cannot load this name"
            raise DatasetError(
                f"data.path={cfg.path!r} is not a local file and could not be loaded from the "
                f"hub: {type(e).__name__}: {e}"
            ) from e
    columns = ds.column_names or []
    if cfg.text_field not in columns:
        raise DatasetError(
            f"data.text_field={cfg.text_field!r} is not a column of {cfg.path}; columns: {columns}"
        )
    return (row[cfg.text_field] for row in ds)


def _token_batches(texts: Iterable[str], tokenizer) -> Iterator[list[list[int]]]:
    """Token ids of documents, a batch of documents at a time (fast tokenizers parallelise it)."""
    batch: list[str] = []
    for text in texts:
        batch.append(text)
        if len(batch) == TOKENIZE_BATCH:
            yield tokenizer(batch, add_special_tokens=False)["input_ids"]
            batch = []
    if batch:
        yield tokenizer(batch, add_special_tokens=False)["input_ids"]


def build_contexts(texts: Iterable[str], tokenizer, cfg: DataConfig, pad_id: int) -> TokenContexts:
    """Token contexts [n, ctx] from documents, framed as ``tokenizer``'s model expects (with
    ``cfg.prepend_bos``), stopping at ``cfg.max_tokens`` context tokens.

    Memory: 4 bytes per context token (int32 blocks), whatever the dataset size.
    """
    frame = context_frame(tokenizer, cfg.prepend_bos)
    if len(frame.start) + len(frame.end) >= cfg.context_size:
        raise DatasetError(f"data.context_size={cfg.context_size} leaves no room for text between the special "
                           f"tokens {list(frame.start)} and {list(frame.end)}")
    max_contexts = max(1, cfg.max_tokens // cfg.context_size) if cfg.max_tokens else None
    cut = _pack if cfg.packing else _pad
    blocks: list[tuple[np.ndarray, np.ndarray]] = []  # (tokens [k, ctx], lengths [k])
    leftover = np.zeros(0, dtype=np.int32)  # packing: stream tokens not yet in a context
    n_contexts = 0
    for token_lists in _token_batches(texts, tokenizer):
        tokens, lengths, leftover = cut(token_lists, leftover, cfg, frame, pad_id)
        blocks.append((tokens, lengths))
        n_contexts += len(tokens)
        if max_contexts is not None and n_contexts >= max_contexts:
            break
    if n_contexts == 0:
        raise DatasetError(f"{cfg.path} gave no complete context of {cfg.context_size} tokens")
    tokens = torch.from_numpy(np.concatenate([b[0] for b in blocks])[:max_contexts])
    lengths = torch.from_numpy(np.concatenate([b[1] for b in blocks])[:max_contexts])
    mask = torch.arange(cfg.context_size) < lengths[:, None]  # [n, ctx]
    return TokenContexts(tokens=tokens, mask=mask)


def _pack(token_lists, leftover, cfg: DataConfig, frame: ContextFrame, pad_id):
    """Append documents (each followed by the separator) to the stream; cut off every full context."""
    separator = [frame.separator] if frame.separator is not None else []
    stream = np.concatenate([leftover] + [np.asarray(ids + separator, dtype=np.int32) for ids in token_lists])
    body = cfg.context_size - len(frame.start) - len(frame.end)  # stream tokens per context
    n = len(stream) // body
    rows = stream[: n * body].reshape(n, body)  # [n, body]
    start = np.tile(np.asarray(frame.start, dtype=np.int32), (n, 1))  # [n, len(start)]
    end = np.tile(np.asarray(frame.end, dtype=np.int32), (n, 1))  # [n, len(end)]
    rows = np.concatenate([start, rows, end], axis=1)  # [n, ctx]
    return rows, np.full(n, cfg.context_size, dtype=np.int64), stream[n * body :]


def _pad(token_lists, leftover, cfg: DataConfig, frame: ContextFrame, pad_id):
    """One context per non-empty document: start + its first tokens + end, right-padded."""
    body = cfg.context_size - len(frame.start) - len(frame.end)
    rows = [list(frame.start) + ids[:body] + list(frame.end) for ids in token_lists if ids]
    tokens = np.full((len(rows), cfg.context_size), pad_id, dtype=np.int32)
    for i, row in enumerate(rows):
        tokens[i, : len(row)] = row
    return tokens, np.array([len(r) for r in rows], dtype=np.int64), leftover
