"""Cursors of ``/query``: the next page of the same query, in the same build.

A cursor is ``<payload>.<check>``: the payload (base64url JSON) holds the build it came from, how
many of the build's delta segments the first page saw (and the last one's id), how many results
came before it, and the last result's row and score; the check is a digest of the payload and the
query's fingerprint. No secret is needed: the client sends the query again with
its cursor, and a cursor is only accepted with the query it was made for; forging one gives
nothing a client could not get by paging (every page it names lies within ``MAX_DEPTH``).

Pages are cut by the last result (score, then row), not by an offset alone: an approximate
index asked for more results may rank a few differently, and this way a page never repeats a
result of an earlier one, and scores never rise from one page to the next.

Segments published while a client pages do not shift its pages: every page searches the rows the
first page could see (a row keeps its number as segments arrive, artefacts/view.py), minus any
deleted since, which are never shown. A cursor expires (409) only when its build is no longer the
base served, or its segments are not the ones served (a build folded them in).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass, replace

from image_search.errors import CursorExpiredError, InvalidCursorError

# Results reachable through cursors, every page together: deeper ranks of an approximate index
# lose recall (docs/api.md#cursors has the figures), and each page searches this deep.
MAX_DEPTH = 1000


@dataclass(frozen=True, slots=True)
class After:
    """Where a page starts: after ``offset`` results, the last of them ``row`` at ``score``, in
    build ``build_id`` with its first ``segments`` segments (the last of them ``last``)."""

    build_id: str
    offset: int
    row: int
    score: float
    segments: int = 0
    last: str = ""

    def follows(self, row: int, score: float) -> bool:
        """Whether a result at ``score`` (``row``) ranks after this one: lower score, or the
        same score and a higher row (the order ties are broken in)."""
        return score < self.score or (score == self.score and row > self.row)


def make(after: After, *, fingerprint: str) -> str:
    payload = json.dumps(
        {
            "b": after.build_id,
            "n": after.segments,
            "l": after.last,
            "o": after.offset,
            "r": after.row,
            "s": after.score,
        },
        separators=(",", ":"),
    ).encode()
    encoded = base64.urlsafe_b64encode(payload).decode().rstrip("=")
    return f"{encoded}.{_check(encoded, fingerprint)}"


def read(cursor: str, *, fingerprint: str, build_id: str, segment_ids: Sequence[str]) -> After:
    """The page a cursor names, in the build ``build_id`` with ``segment_ids`` applied.
    ``InvalidCursorError`` when it is damaged or belongs to another query;
    ``CursorExpiredError`` when its build or segments are no longer the ones served. A cursor
    from a server that had seen more segments than this one is read with those it has."""
    encoded, _, check = cursor.partition(".")
    if not hmac.compare_digest(check.encode(), _check(encoded, fingerprint).encode()):
        raise InvalidCursorError(
            "the cursor is damaged or was made for another query: send it with the same "
            "positive, negative, folder, prefix, filters and min_score as the page it came with"
        )
    try:
        fields = json.loads(base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)))
        after = After(
            str(fields["b"]),
            int(fields["o"]),
            int(fields["r"]),
            float(fields["s"]),
            segments=int(fields.get("n", 0)),
            last=str(fields.get("l", "")),
        )
    except (ValueError, KeyError, TypeError, AttributeError, binascii.Error) as exc:
        raise InvalidCursorError("the cursor cannot be read") from exc
    if after.build_id != build_id:
        raise CursorExpiredError(
            f"the cursor belongs to build {after.build_id}, and build {build_id} has replaced "
            "it since: its pages would not follow on. Run the query again without a cursor."
        )
    if not 0 < after.offset < MAX_DEPTH:
        raise InvalidCursorError(f"the cursor's offset is outside 1 to {MAX_DEPTH - 1}")
    if after.segments < 0:
        raise InvalidCursorError("the cursor's segment count is negative")
    if after.segments > len(segment_ids):  # this server has not seen them yet
        held = len(segment_ids)
        return replace(after, segments=held, last=segment_ids[-1] if held else "")
    if after.segments and segment_ids[after.segments - 1] != after.last:
        raise CursorExpiredError(
            f"the cursor was made with segment {after.last} of build {build_id}, which is no "
            "longer served: its pages would not follow on. Run the query again without a cursor."
        )
    return after


def page(
    ids: list[int], scores: list[float], *, after: After | None, exclude: set[int], k: int
) -> tuple[list[tuple[int, float]], bool]:
    """The next ``k`` results (row, score) of a ranking, and whether more follow them."""
    rows = [
        (row, score)
        for row, score in zip(ids, scores, strict=True)
        if row not in exclude and (after is None or after.follows(row, score))
    ]
    return rows[:k], len(rows) > k


def _check(encoded: str, fingerprint: str) -> str:
    return hashlib.sha256(f"{encoded}|{fingerprint}".encode()).hexdigest()[:32]
