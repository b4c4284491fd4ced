"""Automatic folder detection: which of the index's folders a text query names.

"show me nature photos" → ``nature``; "find animal pictures" → ``animals``; "city streets at
night" → ``city_streets``. A folder matches when every word of its name appears in the query,
singular or plural, generic words (photo, picture, image, ...) counting on neither side.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

GENERIC = frozenset(
    {"photo", "picture", "image", "pic", "img", "photograph", "snapshot", "snap", "foto", "shot"}
)
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """Lower-case words; ``_``, ``-``, spaces, punctuation and camelCase all separate words."""
    return [word.lower() for word in _WORD.findall(_CAMEL.sub(" ", text))]


def forms(word: str) -> set[str]:
    """The word and its plausible singulars, so "cities"/"city" and "buses"/"bus" meet."""
    found = {word}
    if len(word) > 3:
        if word.endswith("ies"):
            found.add(word[:-3] + "y")
        if word.endswith("ves"):
            found.update({word[:-3] + "f", word[:-3] + "fe"})
        if word.endswith("es"):
            found.add(word[:-2])
        if word.endswith("s") and not word.endswith("ss"):
            found.add(word[:-1])
    return found


def _meaningful(text: str) -> list[set[str]]:
    return [f for f in map(forms, words(text)) if not f & GENERIC]


def detect(query: str, folders: Iterable[str]) -> list[str]:
    """The folders the query names, in the order given; empty when it names none."""
    query_forms: set[str] = set().union(*_meaningful(query))
    matched = []
    for folder in folders:
        name_words = _meaningful(folder)
        if name_words and all(word & query_forms for word in name_words):
            matched.append(folder)
    return matched
