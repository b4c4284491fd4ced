"""Automatic folder detection: which of the index's folders a text query names.

"show me nature photos" → ``nature``; "find animal pictures" → ``animals``; "city streets at
night" → ``city_streets``. A folder matches when every word of its name appears in the query,
singular or plural. Generic words (photo, picture, image, ...) and function words (articles,
pronouns, prepositions, conjunctions, forms of "to be"), and one-letter words, count on neither
side: "a dog on a beach" names no folder ``a``.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

GENERIC = frozenset(
    {"photo", "picture", "image", "pic", "img", "photograph", "snapshot", "snap", "foto", "shot"}
)
# Words that say nothing about what a picture shows; folders named only by them are never
# detected (they can still be chosen with ``folder``).
FUNCTION_WORDS = frozenset(
    """
    an the this that these those some any each every no
    me my mine you your yours he him his she her hers it its we us our ours they them their
    theirs what which who whom whose where when how why
    about above across after against along among around at before behind below beneath beside
    between beyond by down during for from in into near of off on onto out over past per since
    than through till to toward towards under until up upon via with within without
    and or but nor so if as
    is are was were be been being am do does did has have had
    """.split()
)
# Words ending in "s" that are not the plural of the word without it ("news" is not "new").
NOT_PLURAL = frozenset(
    """
    news series species means physics mathematics politics economics athletics gymnastics
    electronics ethics genetics linguistics logistics mechanics optics statistics
    """.split()
)
# The plurals in "-ves" that come from "-f"/"-fe"; other "-ves" words only drop the "s"
# ("caves" → "cave", never "cafe").
VES_PLURALS = {
    "leaves": "leaf",
    "knives": "knife",
    "wolves": "wolf",
    "lives": "life",
    "wives": "wife",
    "shelves": "shelf",
    "halves": "half",
    "calves": "calf",
    "loaves": "loaf",
    "thieves": "thief",
    "scarves": "scarf",
    "elves": "elf",
    "hooves": "hoof",
}
# After these endings a plural adds "-es" ("boxes", "buses", "dishes", "tomatoes").
ES_AFTER = ("s", "x", "z", "ch", "sh", "o")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """Lower-case words; ``_``, ``-``, spaces, punctuation and camelCase all separate words.

    In NFC first: a decomposed "café" (e + a combining accent, which is not a word character)
    would otherwise read as "cafe" and never meet the query's "café".
    """
    text = unicodedata.normalize("NFC", text)
    return [word.lower() for word in _WORD.findall(_CAMEL.sub(" ", text))]


def forms(word: str) -> set[str]:
    """The word and its plausible singulars, so "cities"/"city" and "buses"/"bus" meet."""
    found = {word}
    if len(word) <= 3 or word in NOT_PLURAL or word.endswith("ss"):
        return found
    if word in VES_PLURALS:
        found.add(VES_PLURALS[word])
    if word.endswith("ies"):
        found.add(word[:-3] + "y")
    if word.endswith("es") and word[:-2].endswith(ES_AFTER):
        found.add(word[:-2])
    if word.endswith("s"):
        found.add(word[:-1])
    return found


def _meaningful(text: str) -> list[set[str]]:
    kept = [word for word in words(text) if len(word) > 1 and word not in FUNCTION_WORDS]
    return [f for f in map(forms, kept) if not f & GENERIC]


def detect(query: str, folders: Iterable[str]) -> list[str]:
    """The folders the query names, in the order given; empty when it names none."""
    query_forms: set[str] = set().union(*_meaningful(query))
    matched = []
    for folder in folders:
        name_words = _meaningful(folder)
        if name_words and all(word & query_forms for word in name_words):
            matched.append(folder)
    return matched
