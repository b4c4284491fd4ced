"""open_clip's CLIP tokenizer (``SimpleTokenizer``) written as a ``tokenizer.json``.

open_clip tokenises in Python from its own BPE file; the ONNX runtime has only the ``tokenizers``
library. The same vocabulary and merges go into a byte-level BPE with CLIP's end-of-word suffix,
its word pattern, lowercasing and whitespace rule, and the start and end tokens around each text.
What ``tokenizers`` cannot express (ftfy's repairs, HTML unescaping) is the runtime's
``text_clean="open_clip"`` step. tests/model/open_clip/test_tokenizer.py holds the result against
open_clip's tokenizer token for token.
"""

from __future__ import annotations

from collections.abc import Mapping

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, processors
from tokenizers import pre_tokenizers as pre

# CLIP's word pattern without its two special tokens, which ``tokenizers`` matches as added tokens.
WORDS = r"""'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
END_OF_WORD = "</w>"


def clip_bpe(
    vocab: Mapping[str, int], ranks: Mapping[tuple[str, str], int], *, start: str, end: str
) -> Tokenizer:
    """A tokenizer giving open_clip's ids: ``vocab`` and the merges' ``ranks`` as open_clip holds
    them, ``start`` and ``end`` its start-of-text and end-of-text tokens. No padding or
    truncation: the export's manifest carries those."""
    merges = [pair for pair, _ in sorted(ranks.items(), key=lambda item: item[1])]
    bpe = models.BPE(vocab=dict(vocab), merges=merges, end_of_word_suffix=END_OF_WORD)
    tokenizer = Tokenizer(bpe)
    tokenizer.normalizer = normalizers.Sequence(
        [normalizers.Replace(Regex(r"\s+"), " "), normalizers.Strip(), normalizers.Lowercase()]
    )
    tokenizer.pre_tokenizer = pre.Sequence(
        [
            # invert: the pattern matches the words to keep; what lies between them is dropped.
            pre.Split(Regex(WORDS), behavior="removed", invert=True),
            pre.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.add_special_tokens([AddedToken(start, special=True), AddedToken(end, special=True)])
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{start} $A {end}",
        special_tokens=[(start, vocab[start]), (end, vocab[end])],
    )
    tokenizer.decoder = decoders.Sequence(
        [decoders.BPEDecoder(suffix=END_OF_WORD), decoders.ByteLevel()]
    )
    return tokenizer
