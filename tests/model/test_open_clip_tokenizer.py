"""An open_clip export tokenises as open_clip does: the runtime's ids (text_clean, tokenizer.json,
the manifest's padding and truncation) against open_clip's own tokenizer, text by text."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import numpy as np
import pytest

from image_search.model.onnx_clip import OnnxEmbedder

pytestmark = pytest.mark.open_clip
# Skips this module where open_clip is absent (the default venv): `make test-open-clip` runs it.
support = pytest.importorskip("tests.support.open_clip")

TEXTS = [
    "a photo of a cat",
    "",
    "   ",
    "  Hello   WORLD  ",
    "don’t stop “quoted” ‘single’",  # curly quotes, as phones type them: ftfy straightens them
    "ﬁsh ＦＵＬＬ ｗｉｄｔｈ",  # ligature and full-width letters
    "café cafe\u0301",  # composed and decomposed accents (NFC)
    "&amp;lt;b&amp;gt; &quot;html&quot; &#39;x&#39;",  # escaped twice
    "Ã©tÃ© mojibake",
    "数字 123 4567 中文 日本語のテキスト",
    "emoji 🐱🚗 ok 👩‍👩‍👧",
    "tabs\tand\nnewlines\r\n\u00a0nbsp\u2003em",
    "ΣΑΣ ΟΔΟΣ İstanbul ß",
    "it's we'll they'd I'M YOU'RE",
    "a-b_c.d,e!f?g (h) [i] {j} #k @l $m",
    "\u200bzero width\u200d joiner",
    "ᾳ a\u0345b \u0345",  # the ypogegrammeni, which open_clip's pattern skips
    "Ⅻ ② ³ ½",
    "<start_of_text> and <end_of_text> typed in",
    "x" * 300,  # one word longer than the context
    "word " * 100,  # truncated to 75 tokens between the start and end tokens
]


def _random_texts(count: int) -> list[str]:
    """Texts drawn from ASCII, Latin-1, Greek, Cyrillic, CJK, emoji, combining marks and
    whitespace of every kind, so differences no one thought of show up. Only characters this
    Python's Unicode database knows: code points assigned since (a few thousand, none in these
    blocks) are letters to open_clip's ``regex`` and unknown to ``tokenizers``, or the reverse."""
    rng = np.random.default_rng(7)
    blocks = [(0x20, 0x7E), (0xA0, 0xFF), (0x370, 0x3FF), (0x400, 0x4FF), (0x4E00, 0x4FFF)]
    blocks += [(0x1F300, 0x1F64F), (0x300, 0x36F), (0x2000, 0x206F), (0xFF01, 0xFF5E)]
    texts = []
    for _ in range(count):
        chars = []
        for _ in range(int(rng.integers(1, 60))):
            low, high = blocks[int(rng.integers(len(blocks)))]
            char = chr(int(rng.integers(low, high + 1)))
            if unicodedata.category(char) != "Cn":
                chars.append(char)
        texts.append("".join(chars))
    return texts


def test_the_runtime_tokenises_as_open_clip(open_clip_export: Path) -> None:

    reference = support.open_clip.get_tokenizer(support.REDUCED)
    tower = OnnxEmbedder(source=str(open_clip_export), cache_dir=open_clip_export)._text_tower()
    texts = TEXTS + _random_texts(400)
    ours = [encoding.ids for encoding in tower.encode(texts)]
    theirs = reference(texts).tolist()
    different = [text for text, a, b in zip(texts, ours, theirs, strict=True) if a != b]
    assert not different
    assert all(len(ids) == 77 for ids in ours)
    # The padding is open_clip's: zeros after the end token, never more end tokens.
    assert ours[0][:7] == [49406, 320, 1125, 539, 320, 2368, 49407] and set(ours[0][7:]) == {0}
