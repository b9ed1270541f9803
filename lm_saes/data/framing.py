"""Which special tokens frame a model's contexts, read from its tokenizer.

A tokenizer's own template (what ``tokenizer(text)`` adds around a text) tells how its model was
trained to see text: ``[CLS] text [SEP]`` for BERT-style encoders, ``<s> text`` for Llama-style
models, nothing for GPT-2, whose contexts lm-saes starts with its BOS (``<|endoftext|>``), as
transformer_lens does. Packed documents are separated by the template's closing token ([SEP]) or
else by BOS. These special positions are framing, not text: 1d caches leave them out and the
analysis does not count them (``specials``).

``data.prepend_bos = false`` drops the framing; a warning then says what the model expected.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

from lm_saes.errors import ConfigError

PROBE = "a"  # a text every tokenizer encodes as ordinary tokens, to find the template around it


class ContextFrame(NamedTuple):
    start: tuple[int, ...]  # opens every context: (BOS,), (CLS,) or ()
    end: tuple[int, ...]  # closes every context: (SEP,) for BERT-style encoders, else ()
    separator: int | None  # between packed documents: SEP or BOS (None: documents just follow)
    specials: frozenset[int]  # framing ids: not tokens of the text (dropped from 1d caches)


def context_frame(tokenizer, add_special_tokens: bool = True) -> ContextFrame:
    """The frame ``tokenizer``'s model expects (see the module docstring); without
    ``add_special_tokens`` only the separator, with a warning if the model expects a frame."""
    start, end = _template(tokenizer)
    bos = tokenizer.bos_token_id
    if not start and not end:
        if bos is not None:
            start = (bos,)
        elif (cls := getattr(tokenizer, "cls_token_id", None)) is not None and (
                sep := getattr(tokenizer, "sep_token_id", None)) is not None:
            start, end = (cls,), (sep,)  # a BERT tokenizer saved without its template
    separator = end[-1] if end else start[0] if start else bos
    specials = frozenset(start + end + ((separator,) if separator is not None else ()))
    if not add_special_tokens:
        if start or end:
            names = " and ".join(tokenizer.convert_ids_to_tokens(list(start + end)))
            warnings.warn(f"data.prepend_bos = false: contexts are built without {names}, which "
                          f"{getattr(tokenizer, 'name_or_path', '') or 'this tokenizer'}'s model expects around "
                          "its text; its activations may differ from those the model produces in use",
                          stacklevel=2)
        return ContextFrame((), (), separator, specials)
    if not start and not end:
        raise ConfigError("data.prepend_bos=true but the tokenizer has no BOS token (nor a template of special "
                          "tokens); set it false")
    return ContextFrame(start, end, separator, specials)


def special_ids(tokenizer) -> frozenset[int]:
    """The framing ids of ``tokenizer``'s contexts, whether or not they were added."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return context_frame(tokenizer, add_special_tokens=False).specials


def _template(tokenizer) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The ids ``tokenizer`` adds before and after a text of its own accord."""
    plain = list(tokenizer(PROBE, add_special_tokens=False)["input_ids"])
    full = list(tokenizer(PROBE, add_special_tokens=True)["input_ids"])
    for i in range(len(full) - len(plain) + 1):
        if full[i:i + len(plain)] == plain:
            return tuple(full[:i]), tuple(full[i + len(plain):])
    return (), ()
