"""The text each token adds to a sequence, so that a window of tokens, joined, reads as the text.

A token decoded on its own is not what it adds in context: a WordPiece continuation decodes as
``##eman`` but adds ``eman`` to the word before it, and a word adds its space (`` and``); a
byte-level BPE token may hold only part of a character's UTF-8 bytes, which alone decode as
``\\ufffd``. ``TokenPieces`` gives each token id the bytes it adds in the middle of a text:

- byte-level BPE (GPT-2's ``ByteLevel`` decoder): its symbols mapped back to bytes (GPT-2's
  byte-to-unicode table);
- byte-fallback tokens (``<0xE2>``): that byte;
- any other token: ``decode([anchor, id])`` less ``decode([anchor])`` for an ordinary anchor
  token, which applies the tokenizer's own decoder (WordPiece's ``##``, SentencePiece's ``▁``).

``row(ids)`` decodes a window's pieces as one UTF-8 stream and gives each token the characters
it completes, so a character split over two tokens is shown once, whole, on the second (the
first shows ""). Bytes that complete no character (a window cut inside one, invalid UTF-8) are
shown as ``<0xNN>``, never as an indistinguishable U+FFFD; so is a lone token's partial
character in ``shown(id)``, the form of a token outside any window (a logit effect's).
"""

from __future__ import annotations

import codecs
import re
from collections.abc import Sequence

BYTE_FALLBACK = re.compile(r"^<0x([0-9A-Fa-f]{2})>$")
HEX_BYTES = "lm_saes.hex_bytes"  # the codecs error handler writing undecodable bytes as <0xNN>


def _hex_bytes(error: UnicodeDecodeError) -> tuple[str, int]:
    return "".join(f"<0x{b:02X}>" for b in error.object[error.start:error.end]), error.end


codecs.register_error(HEX_BYTES, _hex_bytes)


def gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's table from the printable symbols of byte-level BPE back to the 256 byte values."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    symbols = list(printable)
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            symbols.append(256 + extra)
            extra += 1
    return {chr(s): b for b, s in zip(printable, symbols)}


class TokenPieces:
    """Each token id's bytes in context, remembered after the first time (see the module docstring)."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        decoder = getattr(getattr(tokenizer, "backend_tokenizer", None), "decoder", None)
        self.byte_level = type(decoder).__name__ == "ByteLevel"
        self.byte_decoder = gpt2_byte_decoder() if self.byte_level else {}
        self.specials = set(getattr(tokenizer, "all_special_ids", []))
        self.anchor = list(tokenizer("a", add_special_tokens=False)["input_ids"])[:1]
        self.anchor_text = tokenizer.decode(self.anchor)
        self._bytes: dict[int, bytes] = {}

    def piece(self, token_id: int) -> bytes:
        """The bytes ``token_id`` adds in the middle of a text."""
        if token_id not in self._bytes:
            self._bytes[token_id] = self._piece(token_id)
        return self._bytes[token_id]

    def whole(self, token_id: int) -> bool:
        """Whether the token's bytes are whole characters (it needs no neighbour to be shown)."""
        try:
            self.piece(token_id).decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True

    def text(self, token_id: int) -> str:
        """The token's piece as text (a partial character as ``<0xNN>``: use ``row`` for windows)."""
        return self.piece(token_id).decode("utf-8", HEX_BYTES)

    def shown(self, token_id: int) -> str:
        """The token on its own, as the tokenizer decodes it when its bytes are whole characters,
        else its bytes with the partial characters as ``<0xNN>`` (``decode`` would give U+FFFD)."""
        return self.tokenizer.decode([token_id]) if self.whole(token_id) else self.text(token_id)

    def row(self, ids: Sequence[int]) -> list[str]:
        """The pieces of consecutive tokens, each with the characters it completes."""
        decoder = codecs.getincrementaldecoder("utf-8")(HEX_BYTES)
        texts = [decoder.decode(self.piece(i)) for i in ids]
        if texts:
            texts[-1] += decoder.decode(b"", final=True)  # an unfinished character at the end
        return texts

    def _piece(self, token_id: int) -> bytes:
        token = self.tokenizer.convert_ids_to_tokens(token_id)
        if token_id in self.specials or token is None:
            return self.tokenizer.decode([token_id]).encode("utf-8")
        if self.byte_level and all(c in self.byte_decoder for c in token):
            return bytes(self.byte_decoder[c] for c in token)
        if match := BYTE_FALLBACK.match(token):
            return bytes([int(match.group(1), 16)])
        joined = self.tokenizer.decode(self.anchor + [token_id])
        if self.anchor and joined.startswith(self.anchor_text):
            return joined[len(self.anchor_text):].encode("utf-8")
        return self.tokenizer.decode([token_id]).encode("utf-8")
