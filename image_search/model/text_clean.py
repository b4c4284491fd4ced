"""Text cleaning a family applies before its tokenizer, named in the export's manifest.

open_clip's CLIP tokenizer (``clean="lower"``) first repairs the text with ftfy (mojibake, curly
quotes, ligatures, full-width letters, NFC), unescapes HTML twice, collapses whitespace and
lowercases. ``tokenizer.json`` holds the BPE, the whitespace rule and the lowercasing, but ftfy's
repairs cannot be written in it, so the runtime does them here. Without them a query typed on a
phone ("don’t", with a curly apostrophe) would get other tokens than the model was trained with.
"""

from __future__ import annotations

import html
from collections.abc import Callable
from typing import Literal

TextClean = Literal["none", "open_clip"]


def cleaner(name: TextClean) -> Callable[[str], str] | None:
    """The function for ``name``; None when texts go to the tokenizer as they are."""
    match name:
        case "none":
            return None
        case "open_clip":
            import ftfy  # only open_clip exports need it: imported when one loads

            def clean(text: str) -> str:
                text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
                # open_clip's case-insensitive word pattern matches no alternative for U+0345
                # (a combining mark that case-folds to a letter), so it ends the word it is in
                # and vanishes; as a space it does the same in tokenizer.json.
                text = text.replace("\u0345", " ")
                return " ".join(text.split()).lower()

            return clean
    raise ValueError(f"unknown text cleaning {name!r}")
