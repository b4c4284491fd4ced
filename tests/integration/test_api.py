"""The HTTP API against moto S3, a tiny random CLIP and an index made by the real build.

Random weights make rankings meaningless, so every ranking is checked against a brute-force
oracle over the build's stored vectors.
"""

from __future__ import annotations

import io
from urllib.parse import parse_qs, urlparse

import httpx
import numpy as np
import pytest

from image_search.artefacts.loader import load_vectors, read_pointer
from image_search.artefacts.location import IndexLocation
from image_search.serve.service import get_service
from image_search.storage import s3
from tests.support.factories import encode, phone_bytes, random_image, skimage_photos
from tests.support.service import make_api


def stored_vectors(bucket: str) -> tuple[list[str], np.ndarray]:
    client = s3.make_client()
    pointer = read_pointer(IndexLocation(client, bucket, "index/"))
    assert pointer is not None
    metadata, vectors = load_vectors(IndexLocation(client, bucket, "index/"), pointer=pointer)
    return [item.key for item in metadata.items], vectors


def oracle(
    query_vector: np.ndarray, keys: list[str], vectors: np.ndarray, *, only: str = ""
) -> list[str]:
    scores = vectors @ query_vector.ravel()
    order = np.argsort(-scores, kind="stable")
    return [keys[row] for row in order if not only or keys[row].startswith(only + "/")]


def test_text_search_equals_a_brute_force_ranking(api_env, indexed_bucket) -> None:
    api = make_api()
    query = "red car in the city"  # names no folder: searches everything
    response = api.post("/image_search/search", json={"query": query, "k": 12})
    assert response.status_code == 200
    assert response.headers["X-Image-Search-Folders"] == "*"
    keys, vectors = stored_vectors(indexed_bucket)
    expected = oracle(get_service().embedder.embed_texts([query]), keys, vectors)
    body = response.json()
    assert [hit["key"] for hit in body] == expected
    assert [hit["rank"] for hit in body] == list(range(1, 13))
    for hit in body:
        assert set(hit) == {
            *("rank", "score", "distance", "folder", "key", "s3_path", "image_url", "photo")
        }
        assert hit["distance"] == pytest.approx(np.sqrt(2 - 2 * hit["score"]), abs=1e-6)
        assert hit["s3_path"] == f"s3://{indexed_bucket}/{hit['key']}"
        assert hit["folder"] == hit["key"].split("/")[0]


def test_default_k_is_five_and_min_score_filters(api_env) -> None:
    api = make_api()
    everything = api.post("/image_search/search", json={"query": "anything at all"}).json()
    assert len(everything) == 5
    threshold = everything[2]["score"]
    kept = api.post(
        "/image_search/search", json={"query": "anything at all", "min_score": threshold}
    ).json()
    assert [h["key"] for h in kept] == [h["key"] for h in everything[:3]]
    none = api.post("/image_search/search", json={"query": "anything at all", "min_score": 1.0})
    assert none.status_code == 200 and none.json() == []


def test_detected_folder_is_searched_and_reported(api_env, indexed_bucket) -> None:
    api = make_api()
    response = api.post("/image_search/search", json={"query": "show me nature photos", "k": 3})
    assert response.headers["X-Image-Search-Folders"] == "nature"
    assert response.headers["X-Image-Search-Detected"] == "true"
    keys, vectors = stored_vectors(indexed_bucket)
    expected = oracle(
        get_service().embedder.embed_texts(["show me nature photos"]), keys, vectors, only="nature"
    )
    assert [hit["key"] for hit in response.json()] == expected[:3]

    both = api.post("/image_search/search", json={"query": "animals or vehicles", "k": 10})
    assert both.headers["X-Image-Search-Folders"] == "animals,vehicles"
    assert {hit["folder"] for hit in both.json()} <= {"animals", "vehicles"} and len(
        both.json()
    ) == 8


def test_folder_search_is_the_true_top_k_of_the_weakest_folder(api_env, indexed_bucket) -> None:
    api = make_api()
    query = "a photograph"
    keys, vectors = stored_vectors(indexed_bucket)
    ranking = oracle(get_service().embedder.embed_texts([query]), keys, vectors)
    weakest = ranking[-1].split("/")[0]  # the folder holding the globally weakest match
    response = api.post("/image_search/search", json={"query": query, "k": 3, "folder": weakest})
    got = [hit["key"] for hit in response.json()]
    assert got == [key for key in ranking if key.startswith(weakest + "/")][:3]
    assert response.headers["X-Image-Search-Detected"] == "false"


def test_unknown_folder_is_404_naming_the_known_ones(api_env) -> None:
    response = make_api().post("/image_search/search", json={"query": "cat", "folder": "planets"})
    assert response.status_code == 404
    assert "animals, nature, vehicles" in response.json()["detail"]


def test_uploaded_copy_of_an_indexed_image_comes_first(api_env) -> None:
    api = make_api()
    photo = skimage_photos()["chelsea.png"]
    response = api.post(
        "/image_search/search_by_image",
        files={"file": ("whatever.bin", photo, "application/octet-stream")},
        data={"k": "3"},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body) == 3 and body[0]["key"] == "animals/cat.png"
    assert body[0]["score"] == pytest.approx(1.0, abs=1e-4) and body[0]["distance"] < 0.02
    assert "decode;dur=" in response.headers["Server-Timing"]


@pytest.mark.parametrize("fmt", ["HEIF", "AVIF"])
def test_a_phone_photo_upload_finds_its_indexed_copy(api_env, fmt: str) -> None:
    from PIL import Image

    photo = Image.open(io.BytesIO(skimage_photos()["chelsea.png"])).convert("RGB")
    response = make_api().post(
        "/image_search/search_by_image",
        files={"file": (f"IMG_0001.{fmt.lower()}", phone_bytes(photo, fmt), "image/heic")},
        data={"k": "1"},
    )
    assert response.status_code == 200, response.text
    assert response.json()[0]["key"] == "animals/cat.png"


def test_upload_k_as_query_parameter_and_folder(api_env) -> None:
    photo = encode(random_image(10), "JPEG")  # the bytes of animals/dog 1.JPG
    response = make_api().post(
        "/image_search/search_by_image?k=2",
        files={"file": ("x.jpg", photo)},
        data={"folder": "nature"},
    )
    assert response.status_code == 200
    assert len(response.json()) == 2 and {h["folder"] for h in response.json()} == {"nature"}


@pytest.mark.parametrize(
    ("data", "status", "detail"),
    [
        (b"definitely not an image", 400, "PNG, JPEG, GIF, BMP, TIFF, WEBP"),
        (encode(random_image(1), "PPM"), 400, "PNG, JPEG, GIF, BMP, TIFF, WEBP"),
        (b"", 400, "empty"),
    ],
    ids=["text", "ppm", "empty"],
)
def test_bad_uploads_are_400(api_env, data: bytes, status: int, detail: str) -> None:
    response = make_api().post(
        "/image_search/search_by_image", files={"file": ("a.png", data, "image/png")}
    )
    assert response.status_code == status and detail in response.json()["detail"]


def test_uploads_over_the_byte_limit_are_413(api_env) -> None:
    api_env.setenv("IMAGE_SEARCH_MAX_UPLOAD_BYTES", "1000")
    big = encode(random_image(1, size=(200, 200)), "PNG")
    response = make_api().post("/image_search/search_by_image", files={"file": ("a.png", big)})
    assert response.status_code == 413 and "limit" in response.json()["detail"]


def test_decompression_bombs_are_413(api_env) -> None:
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("1", (30_000, 30_000)).save(buffer, "PNG")
    response = make_api().post(
        "/image_search/search_by_image", files={"file": ("bomb.png", buffer.getvalue())}
    )
    assert response.status_code == 413 and "pixels" in response.json()["detail"]


def test_similar_excludes_the_image_itself(api_env, indexed_bucket) -> None:
    api = make_api()
    keys, vectors = stored_vectors(indexed_bucket)
    response = api.post("/image_search/similar", json={"key": "animals/cat.png", "k": 4})
    got = [hit["key"] for hit in response.json()]
    expected = [
        k
        for k in oracle(vectors[keys.index("animals/cat.png")], keys, vectors)
        if k != "animals/cat.png"
    ]
    assert got == expected[:4]
    by_path = api.post(
        "/image_search/similar", json={"s3_path": f"s3://{indexed_bucket}/animals/cat.png", "k": 4}
    )
    assert [hit["key"] for hit in by_path.json()] == got
    in_folder = api.post(
        "/image_search/similar", json={"key": "animals/cat.png", "k": 10, "folder": "animals"}
    )
    assert [h["key"] for h in in_folder.json()] == [k for k in expected if k.startswith("animals/")]


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"key": "animals/unicorn.png"}, 404),
        ({"s3_path": "s3://another-bucket/animals/cat.png"}, 404),
        ({}, 422),
        ({"key": "animals/cat.png", "s3_path": "s3://x/y"}, 422),
    ],
)
def test_similar_errors(api_env, body: dict, status: int) -> None:
    response = make_api().post("/image_search/similar", json=body)
    assert response.status_code == status and response.json()["detail"]


def test_folders_and_health(api_env, tiny_model) -> None:
    api = make_api()
    assert api.get("/image_search/folders").json() == [
        {"folder": "animals", "count": 4},
        {"folder": "nature", "count": 4},
        {"folder": "vehicles", "count": 4},
    ]
    health = api.get("/health").json()
    assert health["count"] == 12 and health["model"] == str(tiny_model) and health["build_id"]


@pytest.mark.parametrize(
    "body",
    [
        {"query": ""},
        {"query": "   "},
        {"query": "x" * 501},
        {"query": "cat", "k": 0},
        {"query": "cat", "k": 101},
        {"k": 3},
    ],
    ids=["empty", "blank", "too-long", "k0", "k101", "no-query"],
)
def test_request_schema_errors_are_422(api_env, body: dict) -> None:
    response = make_api().post("/image_search/search", json=body)
    assert response.status_code == 422 and response.json()["detail"]


def test_presigned_urls_are_sigv4_with_the_configured_expiry(api_env, indexed_bucket) -> None:
    api_env.setenv("IMAGE_SEARCH_PRESIGN_EXPIRES", "900")
    hit = make_api().post("/image_search/search", json={"query": "rocket", "k": 1}).json()[0]
    params = parse_qs(urlparse(hit["image_url"]).query)
    assert params["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"] and params["X-Amz-Expires"] == ["900"]
    fetched = httpx.get(hit["image_url"])
    stored = s3.make_client().get_object(Bucket=indexed_bucket, Key=hit["key"])["Body"].read()
    assert fetched.status_code == 200 and fetched.content == stored


def test_presign_expiry_is_capped_at_seven_days(api_env) -> None:
    api_env.setenv("IMAGE_SEARCH_PRESIGN_EXPIRES", str(30 * 24 * 3600))
    hit = make_api().post("/image_search/search", json={"query": "rocket", "k": 1}).json()[0]
    assert parse_qs(urlparse(hit["image_url"]).query)["X-Amz-Expires"] == ["604800"]


def test_public_url_mode(api_env, indexed_bucket, s3_endpoint) -> None:
    api_env.setenv("IMAGE_SEARCH_URL_MODE", "public")
    hit = make_api().post("/image_search/search", json={"query": "rocket", "k": 1}).json()[0]
    assert (
        hit["image_url"].startswith(f"{s3_endpoint}/{indexed_bucket}/")
        and "?" not in hit["image_url"]
    )


def test_api_prefix_is_prepended_to_every_route(api_env) -> None:
    api_env.setenv("IMAGE_SEARCH_API_PREFIX", "/api/demo_backend_v2/")
    api = make_api()
    assert (
        api.post("/api/demo_backend_v2/image_search/search", json={"query": "cat"}).status_code
        == 200
    )
    assert api.get("/api/demo_backend_v2/health").status_code == 200
    assert api.post("/image_search/search", json={"query": "cat"}).status_code == 404


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"x-api-key": "wrong"}, 401),
        ({"Authorization": "Bearer wrong"}, 401),
        ({"Authorization": "Basic secret-two"}, 401),
        ({"x-api-key": "secret-two"}, 200),
        ({"Authorization": "Bearer secret-one"}, 200),
    ],
)
def test_api_keys(api_env, headers: dict, status: int) -> None:
    api_env.setenv("IMAGE_SEARCH_API_KEYS", "secret-one, secret-two")
    api = make_api()
    response = api.post("/image_search/search", json={"query": "cat"}, headers=headers)
    assert response.status_code == status
    if status == 401:
        assert response.json()["detail"] and response.headers["WWW-Authenticate"] == "Bearer"
    assert api.get("/health").status_code == 200  # health stays open for load balancers
    assert api.get("/image_search/folders", headers=headers).status_code == status


def test_cors_origins(api_env) -> None:
    api_env.setenv("IMAGE_SEARCH_CORS_ORIGINS", "https://app.example.com")
    response = make_api().options(
        "/image_search/search",
        headers={"Origin": "https://app.example.com", "Access-Control-Request-Method": "POST"},
    )
    assert response.headers["access-control-allow-origin"] == "https://app.example.com"


def test_no_index_is_503_with_retry_after_until_one_is_published(
    bucket, client, embedder, monkeypatch
) -> None:
    from image_search.build.pipeline import run_build
    from image_search.config import get_settings
    from image_search.serve import lifecycle

    api = make_api()
    for response in (api.get("/health"), api.post("/image_search/search", json={"query": "cat"})):
        assert response.status_code == 503 and response.headers["Retry-After"]
        assert "no index published" in response.json()["detail"]
    client.put_object(Bucket=bucket, Key="animals/a.png", Body=encode(random_image(1)))
    run_build(get_settings(), client=client, embedder=embedder)
    monkeypatch.setattr(lifecycle, "RETRY_SECONDS", 0.0)
    assert api.get("/health").json()["count"] == 1  # picked up without a restart


def test_star_searches_every_folder_without_detection(api_env) -> None:
    response = make_api().post(
        "/image_search/search", json={"query": "show me nature photos", "k": 12, "folder": "*"}
    )
    assert response.headers["X-Image-Search-Folders"] == "*"
    assert response.headers["X-Image-Search-Detected"] == "false"
    assert {hit["folder"] for hit in response.json()} == {"animals", "nature", "vehicles"}


def test_openapi_documents_the_api_key_schemes_and_each_routes_own_errors(api_env) -> None:
    document = make_api().get("/openapi.json").json()
    schemes = document["components"]["securitySchemes"]
    assert {s["type"] for s in schemes.values()} == {"apiKey", "http"}
    assert any(s.get("name") == "x-api-key" for s in schemes.values())
    assert any(s.get("scheme", "").lower() == "bearer" for s in schemes.values())
    paths = document["paths"]
    assert paths["/image_search/search"]["post"]["security"]
    assert "security" not in paths["/health"]["get"]

    def statuses(path: str, method: str) -> set[str]:
        return set(paths[path][method]["responses"])

    assert statuses("/health", "get") == {"200", "503"}
    assert statuses("/image_search/folders", "get") == {"200", "401", "404", "422", "503"}
    assert "400" in statuses("/image_search/search_by_image", "post")
    assert {"400", "404", "413"} <= statuses("/image_search/search", "post")


def test_no_route_dependency_hops_through_the_thread_pool(api_env) -> None:
    """FastAPI runs a plain ``def`` dependency in its thread pool: one thread hop per request
    and dependency (~0.2 ms each on 2 cores, measured). Only the routes themselves, which
    embed and search, may be synchronous."""
    import inspect

    from fastapi.routing import APIRoute

    from image_search.serve.api import create_app

    def dependencies(dependant):  # type: ignore[no-untyped-def]
        for sub in dependant.dependencies:
            yield sub
            yield from dependencies(sub)

    def routes(container):  # type: ignore[no-untyped-def]
        for route in container.routes:
            if isinstance(route, APIRoute):
                yield route
            elif hasattr(route, "original_router"):  # an included router
                yield from routes(route.original_router)

    checked = 0
    for route in routes(create_app()):
        for dependency in dependencies(route.dependant):
            call = dependency.call
            # FastAPI's own security schemes are callable objects with an async __call__.
            target = call if inspect.isfunction(call) else type(call).__call__
            assert inspect.iscoroutinefunction(target), (route.path, call)
            checked += 1
    assert checked > 0
