"""A byte-level BPE tokenizer trained from scratch, wrapped as a Hugging Face fast tokenizer.

Byte-level pre-tokenization and decoding make every string encodable and decode back exactly
(no unknown characters, no normalization). One special token, ``<|endoftext|>``, serves as BOS,
EOS, UNK and padding, as in GPT-2. The tokenizer adds no special tokens itself: whoever builds
contexts prepends BOS.
"""

from __future__ import annotations

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import PreTrainedTokenizerFast

END_OF_TEXT = "<|endoftext|>"


def train_bpe(docs: list[str], vocab_size: int) -> PreTrainedTokenizerFast:
    """Learn ``vocab_size`` BPE tokens (the 256 bytes and END_OF_TEXT included) from ``docs``."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[END_OF_TEXT],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(docs, trainer=trainer, length=len(docs))
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=END_OF_TEXT,
        eos_token=END_OF_TEXT,
        unk_token=END_OF_TEXT,
        pad_token=END_OF_TEXT,
    )
