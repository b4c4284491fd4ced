"""POST /image_search/query against a real build: combined and negative queries ranked as brute
force over the stored vectors ranks the same combination, JSON and multipart alike, and cursors
through every page."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from image_search.config import get_settings
from image_search.model.images import decode
from image_search.serve.service import get_service
from tests.integration.test_api import stored_vectors
from tests.support.buckets import put
from tests.support.factories import encode, random_image, sample_bucket_layout
from tests.support.service import make_api, wait_for_build

UPLOAD = "vehicles/rocket.jpg"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unit(vector: np.ndarray) -> np.ndarray:
    vector = np.asarray(vector, dtype=np.float64).ravel()
    return vector / np.linalg.norm(vector)


def brute_force(bucket: str, parts: list[tuple[str, str, float]], *, only: str = "") -> list[str]:
    """Every indexed key ranked by the normalised weighted sum of the parts' normalised vectors
    (``(kind, value, weight)``; a negative weight subtracts), the named keys left out."""
    keys, vectors = stored_vectors(bucket)
    embedder = get_service().embedder
    layout = sample_bucket_layout()
    total = np.zeros(vectors.shape[1])
    for kind, value, weight in parts:
        if kind == "text":
            found = embedder.embed_texts([value])
        elif kind == "key":
            found = vectors[keys.index(value)]
        else:  # an upload of the bytes of the sample image named
            found = embedder.embed_images([decode(layout[value], max_pixels=10**8)])
        total += weight * unit(found)
    scores = vectors @ unit(total)
    named = {value for kind, value, _ in parts if kind == "key"}
    order = np.argsort(-scores, kind="stable")
    return [keys[r] for r in order if keys[r] not in named and keys[r].startswith(only)]


def keys_of(answer) -> list[str]:  # type: ignore[no-untyped-def]
    assert answer.status_code == 200, answer.text
    return [hit["key"] for hit in answer.json()["results"]]


def test_a_combined_query_ranks_as_brute_force_over_the_stored_vectors(
    api_env, indexed_bucket
) -> None:  # type: ignore[no-untyped-def]
    api = make_api()
    image = sample_bucket_layout()[UPLOAD]
    body = {
        "positive": [
            {"text": "a cat on a sofa", "weight": 2},
            {"key": "nature/astronaut.png"},
            {"image": b64(image), "weight": 0.5},
        ],
        "negative": [{"text": "a red car", "weight": 0.7}, {"key": "animals/cat.png"}],
        "k": 6,
    }
    answer = api.post("/image_search/query", json=body)
    expected = brute_force(
        indexed_bucket,
        [
            ("text", "a cat on a sofa", 2),
            ("key", "nature/astronaut.png", 1),
            ("image", UPLOAD, 0.5),
            ("text", "a red car", -0.7),
            ("key", "animals/cat.png", -1),
        ],
    )
    assert keys_of(answer) == expected[:6]
    found = answer.json()
    assert [hit["rank"] for hit in found["results"]] == list(range(1, 7))
    assert found["build_id"] == api.get("/health").json()["build_id"]
    assert found["next_cursor"]
    hit = found["results"][0]
    assert set(hit) == {
        "rank",
        "score",
        "distance",
        "folder",
        "key",
        "s3_path",
        "image_url",
        "photo",
    }


def test_multipart_with_uploaded_files_answers_as_json_with_base64(api_env) -> None:  # type: ignore[no-untyped-def]
    api = make_api()
    layout = sample_bucket_layout()
    first, second = layout[UPLOAD], layout["nature/leaf.bmp"]
    as_json = api.post(
        "/image_search/query",
        json={"positive": [{"image": b64(first)}, {"image": b64(second), "weight": 3}], "k": 5},
    )
    query = '{"positive": [{"file": "front"}, {"file": "side", "weight": 3}], "k": 5}'
    as_form = api.post(
        "/image_search/query",
        data={"query": query},
        files={"front": ("a.jpg", first, "image/jpeg"), "side": ("b.bmp", second, "image/bmp")},
    )
    assert keys_of(as_form) == keys_of(as_json)
    assert as_form.json()["next_cursor"] == as_json.json()["next_cursor"]


@pytest.mark.parametrize(
    ("where", "only"), [({"folder": "nature"}, "nature/"), ({"prefix": "animals/"}, "animals/")]
)
def test_folders_and_prefixes_hold_the_true_top_k_of_the_combination(
    api_env,
    indexed_bucket,
    where: dict,
    only: str,  # type: ignore[type-arg]
) -> None:
    parts = [("text", "a forest", 1.0), ("key", "vehicles/car.png", -0.5)]
    body = {
        "positive": [{"text": "a forest"}],
        "negative": [{"key": "vehicles/car.png", "weight": 0.5}],
        "k": 3,
        **where,
    }
    answer = make_api().post("/image_search/query", json=body)
    assert keys_of(answer) == brute_force(indexed_bucket, parts, only=only)[:3]


def test_cursors_walk_every_page_disjoint_and_in_rank_order(api_env, indexed_bucket) -> None:  # type: ignore[no-untyped-def]
    api = make_api()
    body = {"positive": [{"text": "something blue"}, {"key": "nature/tree.tiff"}], "k": 2}
    pages, cursor, ranks = [], None, []
    while True:
        answer = api.post("/image_search/query", json={**body, "cursor": cursor})
        pages.append(keys_of(answer))
        ranks += [hit["rank"] for hit in answer.json()["results"]]
        cursor = answer.json()["next_cursor"]
        if cursor is None:
            break
    walked = [key for page in pages for key in page]
    expected = brute_force(
        indexed_bucket, [("text", "something blue", 1.0), ("key", "nature/tree.tiff", 1.0)]
    )
    assert walked == expected  # every indexed image but the named one, once, in rank order
    assert ranks == list(range(1, len(walked) + 1))
    assert all(len(page) == 2 for page in pages[:-1])


def test_a_cursor_only_serves_its_own_query(api_env) -> None:  # type: ignore[no-untyped-def]
    api = make_api()
    body = {"positive": [{"text": "a boat"}], "k": 2}
    cursor = api.post("/image_search/query", json=body).json()["next_cursor"]
    for other in (
        {"positive": [{"text": "a plane"}], "k": 2},
        {**body, "folder": "nature"},
        {**body, "negative": [{"text": "water"}]},
    ):
        answer = api.post("/image_search/query", json={**other, "cursor": cursor})
        assert answer.status_code == 400 and "another query" in answer.json()["detail"]
    damaged = cursor[:-3] + ("abc" if not cursor.endswith("abc") else "abd")
    assert api.post("/image_search/query", json={**body, "cursor": damaged}).status_code == 400
    # A different page size is the same query: the next page just holds more.
    answer = api.post("/image_search/query", json={**body, "k": 3, "cursor": cursor})
    assert [hit["rank"] for hit in answer.json()["results"]] == [3, 4, 5]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"positive": []}, 422),
        ({"positive": [{"text": "a"}] * 6, "negative": [{"text": "b"}] * 5}, 422),
        ({"positive": [{"text": "a", "key": "b"}]}, 422),
        ({"positive": [{"text": "a", "weight": 0}]}, 422),
        ({"positive": [{"text": "a", "weight": -1}]}, 422),
        ({"positive": [{"text": "a"}], "k": 101}, 422),
        ({"positive": [{"text": "a"}], "surprise": 1}, 422),
        ({"positive": [{"text": "a"}], "negative": [{"text": "a"}]}, 400),
        ({"positive": [{"file": "x"}]}, 400),
        ({"positive": [{"image": "%%%"}]}, 400),
        ({"positive": [{"key": "no/such.jpg"}]}, 404),
        ({"positive": [{"text": "a"}], "folder": "nowhere"}, 404),
        ({"positive": [{"text": "a"}], "cursor": "garbage"}, 400),
    ],
)
def test_bad_queries_are_refused_clearly(api_env, body: dict, status: int) -> None:  # type: ignore[no-untyped-def,type-arg]
    answer = make_api().post("/image_search/query", json=body)
    assert answer.status_code == status, answer.text
    assert answer.json()["detail"]


def test_a_bad_multipart_query_is_refused(api_env) -> None:  # type: ignore[no-untyped-def]
    api = make_api()
    image = ("a.png", encode(random_image(1)), "image/png")
    no_query = api.post("/image_search/query", files={"front": image})
    assert no_query.status_code == 400
    not_json = api.post("/image_search/query", data={"query": "{"}, files={"f": image})
    assert not_json.status_code == 422
    unnamed = api.post(
        "/image_search/query", data={"query": '{"positive": [{"file": "g"}]}'}, files={"f": image}
    )
    assert unnamed.status_code == 400 and "'g'" in unnamed.json()["detail"]


def test_json_with_images_may_exceed_64_kib_but_not_the_image_cap(api_env) -> None:  # type: ignore[no-untyped-def]
    api_env.setenv("IMAGE_SEARCH_MAX_UPLOAD_BYTES", str(150_000))
    api = make_api()
    noise = encode(random_image(3, size=(200, 200)), "PNG")
    assert 100_000 < len(noise) < 150_000
    one = api.post("/image_search/query", json={"positive": [{"image": b64(noise)}]})
    assert one.status_code == 200, one.text
    two = api.post("/image_search/query", json={"positive": [{"image": b64(noise)}] * 2})
    assert two.status_code == 413
    # The other routes keep the 64 KiB JSON cap.
    padded = {"query": "a cat", "folder": " " * 100_000}
    assert api.post("/image_search/search", json=padded).status_code == 413


def test_a_cursor_from_a_replaced_build_is_refused_with_what_to_do(
    bucket, client, embedder, monkeypatch
) -> None:  # type: ignore[no-untyped-def]
    from image_search.build.pipeline import run_build

    monkeypatch.setenv("IMAGE_SEARCH_REFRESH_SECONDS", "0.2")
    for seed in range(3):
        put(client, bucket, f"animals/{seed}.png", encode(random_image(seed)))
    run_build(get_settings(), client=client, embedder=embedder)
    api = make_api()
    body = {"positive": [{"text": "a dog"}], "k": 1}
    cursor = api.post("/image_search/query", json=body).json()["next_cursor"]
    assert cursor
    put(client, bucket, "animals/new.png", encode(random_image(9)))
    second = run_build(get_settings(), client=client, embedder=embedder).build_id
    wait_for_build(api, second)
    answer = api.post("/image_search/query", json={**body, "cursor": cursor})
    assert answer.status_code == 409
    assert "without a cursor" in answer.json()["detail"]


def test_one_text_part_answers_as_search_does(api_env) -> None:  # type: ignore[no-untyped-def]
    api = make_api()
    searched = api.post("/image_search/search", json={"query": "a kite", "k": 7, "folder": "*"})
    queried = api.post("/image_search/query", json={"positive": [{"text": "a kite"}], "k": 7})
    assert queried.status_code == searched.status_code == 200
    assert queried.json()["results"] == searched.json()


def test_min_score_ends_the_pages_where_the_scores_drop_below_it(api_env) -> None:  # type: ignore[no-untyped-def]
    api = make_api()
    body = {"positive": [{"key": "nature/astronaut.png"}], "k": 100}
    scores = [hit["score"] for hit in api.post("/image_search/query", json=body).json()["results"]]
    floor = scores[4]
    answer = api.post("/image_search/query", json={**body, "k": 3, "min_score": floor}).json()
    assert answer["next_cursor"]
    rest = api.post(
        "/image_search/query",
        json={**body, "k": 3, "min_score": floor, "cursor": answer["next_cursor"]},
    ).json()
    assert [hit["score"] for hit in answer["results"] + rest["results"]] == scores[:5]
    assert rest["next_cursor"] is None
