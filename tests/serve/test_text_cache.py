"""Repeated text queries reuse their vector: bounded, per model, the same answers."""

from __future__ import annotations

import numpy as np

from image_search.serve.service import get_service
from image_search.serve.text_cache import TextVectors
from tests.support.service import make_api


class Counting:
    """The real embedder, counting the texts it is asked to embed."""

    def __init__(self, embedder, source: str | None = None) -> None:  # type: ignore[no-untyped-def]
        self._embedder = embedder
        self.source = source or embedder.source
        self.texts: list[str] = []

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        self.texts += texts
        return self._embedder.embed_texts(texts)


def test_a_repeated_query_is_embedded_once(embedder) -> None:
    counting, texts = Counting(embedder), TextVectors(size=8)
    first, hit_first = texts(counting, "a red car")
    again, hit_again = texts(counting, "a red car")
    assert counting.texts == ["a red car"] and (hit_first, hit_again) == (False, True)
    np.testing.assert_array_equal(first, again)
    np.testing.assert_allclose(first, embedder.embed_texts(["a red car"]), atol=1e-6)
    assert not again.flags.writeable  # shared between requests: nobody may change it


def test_the_cache_is_bounded_least_recently_used_first(embedder) -> None:
    counting, texts = Counting(embedder), TextVectors(size=2)
    for query in ["one", "two", "one", "three", "one", "two"]:
        texts(counting, query)
    # "two" was the least recently used when "three" arrived, so it is embedded again.
    assert counting.texts == ["one", "two", "three", "two"]


def test_vectors_are_kept_per_model_and_size_zero_keeps_none(embedder) -> None:
    texts = TextVectors(size=8)
    first, other = Counting(embedder, "model-a"), Counting(embedder, "model-b")
    texts(first, "cat")
    assert texts(other, "cat")[1] is False and other.texts == ["cat"]
    off, counting = TextVectors(size=0), Counting(embedder)
    off(counting, "cat")
    off(counting, "cat")
    assert counting.texts == ["cat", "cat"]


def test_the_api_answers_a_repeated_query_the_same(api_env) -> None:
    api = make_api()
    body = {"query": "rocket on the launch pad", "k": 5}
    first = api.post("/image_search/search", json=body)
    again = api.post("/image_search/search", json=body)
    assert [h["key"] for h in first.json()] == [h["key"] for h in again.json()]
    assert [h["score"] for h in first.json()] == [h["score"] for h in again.json()]
    assert "embed;dur=" in again.headers["Server-Timing"]
    service = get_service()
    assert service.search_text("a new query", k=3).cached is False
    assert service.search_text("a new query", k=3).cached is True


def test_callers_neither_hit_nor_evict_each_others_vectors(embedder) -> None:
    counting, texts = Counting(embedder), TextVectors(size=1)
    assert texts(counting, "a red car", caller="key-0")[1] is False
    assert texts(counting, "a red car", caller="key-1")[1] is False  # not key-0's hit
    texts(counting, "a blue boat", caller="key-1")  # evicts key-1's "a red car" only
    assert texts(counting, "a red car", caller="key-0")[1] is True


def test_one_api_key_cannot_tell_what_another_searched(api_env, monkeypatch, caplog) -> None:
    """A cache hit shows in the answer's time (and Server-Timing's embed stage): the second key
    asking what the first just asked must pay for its own embedding."""
    import logging

    monkeypatch.setenv("IMAGE_SEARCH_API_KEYS", "alice-key,bob-key")
    caplog.set_level(logging.DEBUG, logger="image_search.observe.requests")
    api = make_api()
    body = {"query": "a private question", "k": 2}
    for key in ("alice-key", "alice-key", "bob-key"):
        assert api.post("/image_search/search", json=body, headers={"x-api-key": key}).is_success
    cached = [r.cached for r in caplog.records if getattr(r, "kind", None) == "text"]
    assert cached == [False, True, False]
