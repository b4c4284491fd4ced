"""POST /image_search/embed against a real build: the vectors a client gets are the ones search
uses (an indexed image's is its stored row, a text's is the one text search ranks by)."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from image_search.serve.service import get_service
from tests.integration.test_api import oracle, stored_vectors
from tests.support.factories import sample_bucket_layout
from tests.support.service import make_api

IMAGES = ["nature/astronaut.png", "animals/cat.png"]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_an_indexed_image_gets_its_stored_row_and_a_text_the_vector_search_used(
    api_env, indexed_bucket
) -> None:  # type: ignore[no-untyped-def]
    api = make_api()
    layout = sample_bucket_layout()
    text = "a rocket on the launch pad"
    answer = api.post(
        "/image_search/embed",
        json={"texts": [text], "images": [b64(layout[key]) for key in IMAGES]},
    )
    assert answer.status_code == 200, answer.text
    body = answer.json()
    health = api.get("/health").json()
    assert body["model"] == health["model"] and body["dim"] == 16
    keys, vectors = stored_vectors(indexed_bucket)
    for key, vector in zip(IMAGES, body["images"], strict=True):
        np.testing.assert_allclose(vector, vectors[keys.index(key)], atol=1e-5)
    got = np.array(body["texts"], dtype=np.float32)
    assert np.linalg.norm(got, axis=1) == pytest.approx([1.0], abs=1e-5)
    # What text search ranks by: its answer is the brute-force ranking of this vector.
    searched = api.post("/image_search/search", json={"query": text, "folder": "*", "k": 8})
    assert [hit["key"] for hit in searched.json()] == oracle(got, keys, vectors)[:8]
    np.testing.assert_allclose(got, get_service().embedder.embed_texts([text]), atol=1e-6)


def test_multipart_gives_the_same_vectors(api_env) -> None:  # type: ignore[no-untyped-def]
    api = make_api()
    layout = sample_bucket_layout()
    as_json = api.post(
        "/image_search/embed",
        json={"texts": ["a cat", "a tree"], "images": [b64(layout[IMAGES[0]])]},
    ).json()
    as_form = api.post(
        "/image_search/embed",
        data={"texts": ["a cat", "a tree"]},
        files=[("images", ("a.png", layout[IMAGES[0]], "image/png"))],
    )
    assert as_form.status_code == 200, as_form.text
    assert as_form.json() == as_json
    assert len(as_json["texts"]) == 2 and len(as_json["images"]) == 1


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"texts": []}, 422),
        ({"texts": ["x"] * 11}, 422),
        ({"texts": ["  "]}, 422),
        ({"images": ["not base64!"]}, 400),
        ({"images": [b64(b"plain text, not an image")]}, 400),
        ({"query": "a cat"}, 422),
    ],
)
def test_bad_bodies_are_refused_clearly(api_env, body: dict, status: int) -> None:  # type: ignore[no-untyped-def,type-arg]
    answer = make_api().post("/image_search/embed", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"]


def test_images_count_together_against_the_upload_limit(api_env) -> None:  # type: ignore[no-untyped-def]
    api_env.setenv("IMAGE_SEARCH_MAX_UPLOAD_BYTES", str(2_000_000))
    api = make_api()
    photo = sample_bucket_layout()[IMAGES[0]]
    assert 700_000 < len(photo) < 1_000_000
    one = api.post("/image_search/embed", json={"images": [b64(photo)]})
    assert one.status_code == 200, one.text
    three = api.post("/image_search/embed", json={"images": [b64(photo)] * 3})
    assert three.status_code == 413
    form = api.post("/image_search/embed", files=[("images", ("a.png", photo, "image/png"))] * 3)
    assert form.status_code == 413
