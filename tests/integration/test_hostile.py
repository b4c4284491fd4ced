"""Hostile and odd requests, each with its documented answer, over HTTP and through Lambda.

Every case is sent twice: to the app in-process and as an API Gateway event through
``handler.search``. Invalid input must get a 4xx with a JSON ``detail``; unusual but valid input
a 200; nothing a 5xx. After every case a normal search must still give the same answer.
"""

from __future__ import annotations

import base64
import io
import json
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from tests.support.factories import (
    LambdaContext,
    encode,
    jpeg_with_bad_exif,
    mpo_bytes,
    png_bytes,
    random_image,
    tiff_2x2,
)
from tests.support.handlers import entry_point
from tests.support.paths import EVENTS
from tests.support.service import point_at_index

KEY = "hostile-suite-key-7f3a9c"
LIMIT = 100_000  # IMAGE_SEARCH_MAX_UPLOAD_BYTES for this module
NORMAL = {"query": "a cat on a sofa", "k": 5}

Send = Callable[[httpx.Request], tuple[int, Any]]


# ---- hostile payloads ------------------------------------------------------------------------


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width`` x ``height`` pixels (a decompression bomb)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00" * 4096)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


def gif_claiming(width: int, height: int) -> bytes:
    data = bytearray(encode(random_image(3, size=(4, 4)), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # the logical screen size
    return bytes(data)


def real_bomb() -> bytes:
    """A real 7,000 x 6,000 greyscale PNG: 42 Mpx (over the 40 Mpx limit) in ~40 KB."""
    return encode(Image.new("L", (7000, 6000)), "PNG", optimize=False)


def strip(width: int, height: int) -> bytes:
    """A one-pixel-wide strip: a few hundred bytes that CLIP's resize would blow up to gigabytes."""
    return encode(Image.new("RGB", (width, height), (200, 30, 30)), "PNG")


def padded_png(size: int) -> bytes:
    """A valid PNG followed by zeros up to ``size`` bytes (decoders stop at IEND)."""
    data = png_bytes(5)
    return data + b"\x00" * (size - len(data))


def nested_json(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def chunked(total: int) -> Iterator[bytes]:
    """A body with no Content-Length (sent chunked), so only counting can stop it."""
    for _ in range(total // 8192):
        yield b" " * 8192


# ---- the corpus --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    method: str
    path: str
    status: int
    detail: str  # a substring of the JSON detail; for 422 lists, "type@loc" of an error
    request: dict[str, Any] = field(default_factory=dict)  # httpx build_request arguments
    key: str | None = KEY
    via_lambda: bool = True


def upload(name: str, data: bytes, content_type: str = "image/png", **form: str) -> dict:
    return {"files": {"file": (name, data, content_type)}, "data": form}


def search(body: object) -> dict:
    return {"json": body}


def raw(body: bytes, content_type: str | None = "application/json") -> dict:
    return {"content": body, "headers": {"content-type": content_type} if content_type else {}}


def auth(header: str, value: str) -> dict:
    return search(NORMAL) | {"headers": {header: value}}


S, U, SIM = "/image_search/search", "/image_search/search_by_image", "/image_search/similar"
F = "/image_search/folders"
NO_KEY = "missing or invalid API key"
GIF = encode(random_image(7), "GIF")

CASES = [
    # uploads: bytes that are not an acceptable image
    Case("text-named-jpg", "POST", U, 400, "not a recognised image",
         upload("photo.jpg", b"this is a text file named like a photo", "image/jpeg")),
    Case("truncated-jpeg", "POST", U, 400, "could not be decoded",
         upload("cut.jpg", encode(random_image(18), "JPEG")[:300], "image/jpeg")),
    Case("truncated-png", "POST", U, 400, "could not be decoded",
         upload("cut.png", png_bytes(4)[:200])),
    Case("empty-file", "POST", U, 400, "the file is empty", upload("empty.png", b"")),
    # malformed metadata: a bad EXIF tag leaves the picture searchable; a bad layout tag (Pillow
    # raises struct.error / TypeError deep inside) is a broken file
    Case("jpeg-exif-tag-of-wrong-type", "POST", U, 200, "",
         upload("exif.jpg", jpeg_with_bad_exif(), "image/jpeg")),
    Case("tiff-strip-offsets-as-text", "POST", U, 400, "could not be decoded",
         upload("strips.tif", tiff_2x2(text_strip_offsets=True), "image/tiff")),
    Case("svg", "POST", U, 400, "not a recognised image",
         upload("x.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image/svg+xml")),
    Case("pdf", "POST", U, 400, "not a recognised image",
         upload("x.pdf", b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj", "application/pdf")),
    # uploads: too big, by bytes or by pixels
    Case("png-header-bomb", "POST", U, 413, "pixels",
         upload("bomb.png", png_claiming(65535, 65535))),
    Case("gif-header-bomb", "POST", U, 413, "pixels",
         upload("bomb.gif", gif_claiming(65535, 65535), "image/gif")),
    Case("real-42mpx-bomb", "POST", U, 413, "the limit is 40000000 pixels",
         upload("bomb.png", real_bomb())),
    Case("strip-100000x1", "POST", U, 200, "", upload("strip.png", strip(100_000, 1))),
    Case("strip-1x100000", "POST", U, 200, "", upload("strip.png", strip(1, 100_000))),
    Case("upload-at-limit", "POST", U, 200, "", upload("big.png", padded_png(LIMIT))),
    Case("upload-1-byte-over", "POST", U, 413, f"upload is {LIMIT + 1} bytes",
         upload("big.png", padded_png(LIMIT + 1))),
    Case("upload-far-over", "POST", U, 413, "request body exceeds the limit",
         upload("big.png", padded_png(LIMIT * 3))),
    # uploads: the wrong shape of request
    Case("raw-png-body", "POST", U, 422, "missing@body.file", raw(png_bytes(1), "image/png")),
    Case("no-content-type", "POST", U, 422, "missing@body.file", raw(png_bytes(1), None)),
    Case("multipart-no-boundary", "POST", U, 400, "Missing boundary",
         raw(b"--x\r\n", "multipart/form-data")),
    Case("multipart-garbage", "POST", U, 400, "multipart",
         raw(b"garbage", "multipart/form-data; boundary=zz")),
    Case("multipart-no-file-part", "POST", U, 422, "missing@body.file",
         {"data": {"k": "3"}, "files": {"x": ("a", b"", "text/plain")}}),
    Case("file-as-text-field", "POST", U, 422, "body.file",
         {"data": {"file": "not a file"}, "files": {"x": ("a", b"", "text/plain")}}),
    Case("multipart-1200-fields", "POST", U, 400, "Too many fields",
         upload("a.png", png_bytes(1)) | {"data": {f"f{i}": "v" for i in range(1200)}}),
    Case("two-file-parts", "POST", U, 200, "",
         {"files": [("file", ("a.png", png_bytes(1), "image/png")),
                    ("file", ("b.png", png_bytes(2), "image/png"))]}),
    Case("gif-as-octet-stream", "POST", U, 200, "",
         upload("blob", GIF, "application/octet-stream")),
    Case("png-as-text-plain", "POST", U, 200, "", upload("a.txt", png_bytes(1), "text/plain")),
    Case("camera-jpeg-with-mpf", "POST", U, 200, "",
         upload("IMG_0001.JPG", mpo_bytes(5), "image/jpeg")),
    Case("upload-k-0", "POST", U, 422, "greater_than_equal@body.k",
         upload("a.png", png_bytes(1), k="0")),
    Case("upload-k-abc", "POST", U, 422, "int_parsing@body.k",
         upload("a.png", png_bytes(1), k="abc")),
    Case("upload-k-query-101", "POST", U + "?k=101", 422, "less_than_equal@query.k",
         upload("a.png", png_bytes(1))),
    Case("upload-folder-dotdot", "POST", U, 404, "is not in the index",
         upload("a.png", png_bytes(1), folder="../")),
    Case("upload-folder-too-long", "POST", U, 422, "string_too_long@body.folder",
         upload("a.png", png_bytes(1), folder="f" * 300)),
    # text search: k
    Case("k-0", "POST", S, 422, "greater_than_equal@body.k", search({"query": "cat", "k": 0})),
    Case("k-minus-1", "POST", S, 422, "greater_than_equal@body.k",
         search({"query": "cat", "k": -1})),
    Case("k-101", "POST", S, 422, "less_than_equal@body.k", search({"query": "cat", "k": 101})),
    Case("k-10e12", "POST", S, 422, "less_than_equal@body.k",
         search({"query": "cat", "k": 10**12})),
    Case("k-abc", "POST", S, 422, "int_parsing@body.k", search({"query": "cat", "k": "abc"})),
    Case("k-null", "POST", S, 422, "int_type@body.k", search({"query": "cat", "k": None})),
    Case("k-fraction", "POST", S, 422, "int_from_float@body.k",
         search({"query": "cat", "k": 2.5})),
    Case("k-100", "POST", S, 200, "", search({"query": "cat", "k": 100})),
    Case("k-nan", "POST", S, 422, "body.k", raw(b'{"query": "cat", "k": NaN}')),
    Case("min-score-infinity", "POST", S, 422, "less_than_equal@body.min_score",
         raw(b'{"query": "cat", "min_score": Infinity}')),
    Case("min-score-2", "POST", S, 422, "less_than_equal@body.min_score",
         search({"query": "cat", "min_score": 2})),
    # text search: the query
    Case("query-missing", "POST", S, 422, "missing@body.query", search({"k": 3})),
    Case("query-empty", "POST", S, 422, "string_too_short@body.query", search({"query": ""})),
    Case("query-whitespace", "POST", S, 422, "string_too_short@body.query",
         search({"query": " \t\n "})),
    Case("query-10000-chars", "POST", S, 422, "string_too_long@body.query",
         search({"query": "a" * 10_000})),
    Case("query-500-chars", "POST", S, 200, "", search({"query": "ab " * 166 + "ab"})),
    Case("query-number", "POST", S, 422, "string_type@body.query", search({"query": 42})),
    Case("query-emoji", "POST", S, 200, "", search({"query": "🐈‍⬛ 🚗💨 👩🏽‍🚀"})),
    Case("query-rtl", "POST", S, 200, "", search({"query": "\u202equtaen قطة على أريكة חתול"})),
    Case("query-cjk", "POST", S, 200, "", search({"query": "沙发上的猫 ソファの上の猫"})),
    Case("query-nul", "POST", S, 200, "", search({"query": "cat\x00dog\x00"})),
    Case("query-lone-surrogate", "POST", S, 422, "string_unicode@body.query",
         raw(b'{"query": "cat \\ud83d"}')),
    # text search: folders
    Case("folder-dotdot", "POST", S, 404, "is not in the index",
         search({"query": "cat", "folder": "../"})),
    Case("folder-encoded-dotdot", "POST", S, 404, "is not in the index",
         search({"query": "cat", "folder": "%2e%2e"})),
    Case("folder-star", "POST", S, 200, "",  # "*" = every folder, no detection
         search({"query": "cat", "folder": "*"})),
    Case("folder-unknown", "POST", S, 404, "known folders: animals, nature, vehicles",
         search({"query": "cat", "folder": "secret"})),
    Case("folder-very-long", "POST", S, 422, "string_too_long@body.folder",
         search({"query": "cat", "folder": "x" * 5000})),
    Case("folder-with-slashes", "POST", S, 200, "",
         search({"query": "cat", "folder": "/animals/"})),
    # JSON bodies of the wrong kind
    Case("json-malformed", "POST", S, 422, "json_invalid@body", raw(b'{"query": "cat",')),
    Case("json-list", "POST", S, 422, "model_attributes_type@body", search(["cat"])),
    Case("json-string", "POST", S, 422, "model_attributes_type@body", search("cat")),
    Case("json-empty-body", "POST", S, 422, "missing@body", raw(b"")),
    Case("json-not-utf8", "POST", S, 400, "error parsing the body",
         raw(b'{"query": "\xff\xfe"}')),
    Case("json-nested-30000", "POST", S, 400, "error parsing the body",
         raw(nested_json(30_000))),
    Case("json-as-text-plain", "POST", S, 422, "model_attributes_type@body",
         raw(b'{"query": "cat"}', "text/plain")),
    Case("json-unknown-fields", "POST", S, 200, "",
         search({"query": "cat", "admin": True, "k": 2})),
    Case("json-huge", "POST", S, 413, "request body exceeds the limit of 65536 bytes",
         search({"query": "cat", "pad": "x" * 2_000_000})),
    Case("json-huge-chunked", "POST", S, 413, "request body exceeds the limit",
         {"content": chunked(1_000_000), "headers": {"content-type": "application/json"}},
         via_lambda=False),
    # similar
    Case("similar-unknown-key", "POST", SIM, 404, "is not in the index",
         search({"key": "../../etc/passwd"})),
    Case("similar-both", "POST", SIM, 422, "value_error@body",
         search({"key": "a", "s3_path": "s3://b/a"})),
    Case("similar-neither", "POST", SIM, 422, "value_error@body", search({})),
    Case("similar-other-bucket", "POST", SIM, 404, "is not in bucket",
         search({"s3_path": "s3://elsewhere/animals/cat.png"})),
    Case("similar-empty-key", "POST", SIM, 422, "string_too_short@body.key", search({"key": ""})),
    # routes and methods
    Case("unknown-route", "GET", "/nope", 404, "Not Found"),
    Case("unknown-under-prefix", "POST", "/image_search/admin", 404, "Not Found", search({})),
    Case("encoded-traversal-route", "GET", "/image_search/%2e%2e/health", 404, "Not Found"),
    Case("get-search", "GET", S, 405, "Method Not Allowed"),
    Case("put-similar", "PUT", SIM, 405, "Method Not Allowed", search({"key": "a"})),
    Case("delete-health", "DELETE", "/health", 405, "Method Not Allowed"),
    Case("patch-folders", "PATCH", F, 405, "Method Not Allowed"),
    # API keys (IMAGE_SEARCH_API_KEYS is set for this module)
    Case("no-key", "POST", S, 401, NO_KEY, search(NORMAL), key=None),
    Case("wrong-key", "POST", S, 401, NO_KEY, auth("x-api-key", "guess"), key=None),
    Case("key-prefix", "POST", S, 401, NO_KEY, auth("x-api-key", KEY[:-1]), key=None),
    Case("wrong-bearer", "GET", F, 401, NO_KEY, auth("authorization", "Bearer guess"), key=None),
    Case("empty-bearer", "GET", F, 401, NO_KEY, auth("authorization", "Bearer "), key=None),
    Case("key-as-basic-auth", "GET", F, 401, NO_KEY,
         auth("authorization", "Basic " + base64.b64encode(f"u:{KEY}".encode()).decode()),
         key=None),
    Case("key-as-bearer", "GET", F, 200, "", auth("authorization", f"Bearer {KEY}"), key=None),
    Case("health-needs-no-key", "GET", "/health", 200, "", key=None),
]  # fmt: skip


# ---- sending a case in-process or as an API Gateway event ------------------------------------


@pytest.fixture(scope="module")
def hostile_env(indexed_bucket: str, tiny_model: Path, tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from image_search.config import get_settings
    from image_search.serve.service import get_service

    cache = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("IMAGE_SEARCH_API_KEYS", f"other-key,{KEY}")
        env.setenv("IMAGE_SEARCH_MAX_UPLOAD_BYTES", str(LIMIT))
        point_at_index(env, bucket=indexed_bucket, model=tiny_model, cache=cache)
        entry_point("search")  # app and service built from this environment
        import handler

        yield handler
    get_settings.cache_clear()
    get_service.cache_clear()


@pytest.fixture(scope="module")
def http(hostile_env: Any) -> TestClient:
    return TestClient(hostile_env.app)


def send_http(client: TestClient) -> Send:
    def send(request: httpx.Request) -> tuple[int, Any]:
        response = client.send(request)
        return response.status_code, response.json() if response.content else None

    return send


def to_event(request: httpx.Request, *, base64_body: bool = True) -> dict[str, Any]:
    """An HTTP API (v2) event as API Gateway sends it: binary bodies base64-encoded."""
    event = json.loads((EVENTS / "http-upload.json").read_text())
    body = request.read()
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower() != "host"}
    event["headers"] = {**headers, "host": event["headers"]["host"]}
    event["rawPath"] = event["requestContext"]["http"]["path"] = request.url.path
    event["rawQueryString"] = request.url.query.decode()
    event["requestContext"]["http"]["method"] = request.method
    event["routeKey"] = event["requestContext"]["routeKey"] = "$default"
    if base64_body:
        event["body"], event["isBase64Encoded"] = base64.b64encode(body).decode(), True
    else:
        event["body"], event["isBase64Encoded"] = body.decode("latin-1"), False
    return event


def send_lambda(lambda_handler: Callable[..., dict[str, Any]], **options: bool) -> Send:
    def send(request: httpx.Request) -> tuple[int, Any]:
        response = lambda_handler(to_event(request, **options), LambdaContext())
        body = response["body"]
        if response.get("isBase64Encoded"):
            body = base64.b64decode(body)
        return response["statusCode"], json.loads(body) if body else None

    return send


def build(client: TestClient, case: Case) -> httpx.Request:
    arguments = dict(case.request)
    headers = dict(arguments.pop("headers", {}))
    if case.key:
        headers["x-api-key"] = case.key
    return client.build_request(case.method, case.path, headers=headers, **arguments)


def detail_text(body: Any) -> str:
    assert isinstance(body, dict) and "detail" in body, body
    detail = body["detail"]
    if isinstance(detail, str):
        return detail
    return "; ".join(f"{e['type']}@{'.'.join(map(str, e['loc']))}" for e in detail)


def normal_answer(send: Send, client: TestClient) -> list[tuple[str, float]]:
    status, hits = send(client.build_request("POST", S, json=NORMAL, headers={"x-api-key": KEY}))
    assert status == 200, hits
    return [(hit["key"], round(hit["score"], 5)) for hit in hits]


@pytest.fixture(scope="module")
def baseline(http: TestClient) -> list[tuple[str, float]]:
    answer = normal_answer(send_http(http), http)
    assert len(answer) == 5
    return answer


@pytest.fixture(params=["http", "lambda"])
def transport(request, http: TestClient, hostile_env: Any) -> tuple[str, Send]:  # type: ignore[no-untyped-def]
    if request.param == "http":
        return "http", send_http(http)
    return "lambda", send_lambda(hostile_env.search)


# ---- the tests ---------------------------------------------------------------------------------


def test_the_corpus_is_big_enough() -> None:
    assert len(CASES) >= 40 and len({case.id for case in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_hostile_request(case: Case, transport, http: TestClient, baseline) -> None:  # type: ignore[no-untyped-def]
    name, send = transport
    if name == "lambda" and not case.via_lambda:
        pytest.skip("API Gateway always sends a whole body, never a chunked one")
    status, body = send(build(http, case))
    assert status == case.status, body
    if status == 200:
        assert isinstance(body, (list, dict)), body
    else:
        assert case.detail in detail_text(body)
    assert normal_answer(send, http) == baseline


@pytest.mark.parametrize(
    ("request_args", "status", "detail"),
    [
        # API Gateway passes the multipart bytes as text: every byte >= 0x80 changes.
        (upload("a.png", png_bytes(1)), 400, "not a recognised image"),
        (upload("a.gif", GIF, "application/octet-stream"), 413, "pixel limit"),  # mangled size
        (raw(png_bytes(1), "image/png"), 422, "missing@body.file"),
        (raw(GIF, "application/octet-stream"), 422, "missing@body.file"),
    ],
    ids=["multipart-png", "multipart-gif", "raw-png", "raw-gif"],
)
def test_binary_body_not_base64_encoded_through_lambda_is_4xx(
    hostile_env: Any, http: TestClient, baseline, request_args: dict, status: int, detail: str
) -> None:  # type: ignore[no-untyped-def]
    """A binary media type missing from the API's binaryMediaTypes reaches Lambda as text."""
    send = send_lambda(hostile_env.search, base64_body=False)
    arguments = dict(request_args)
    headers = {**arguments.pop("headers", {}), "x-api-key": KEY}
    request = http.build_request("POST", U, headers=headers, **arguments)
    got, body = send(request)
    assert (got, detail in detail_text(body)) == (status, True), body
    assert normal_answer(send, http) == baseline


def test_an_exact_copy_still_finds_itself_after_the_corpus(
    http: TestClient, indexed_bucket: str
) -> None:
    from image_search.storage import s3

    data = s3.make_client().get_object(Bucket=indexed_bucket, Key="nature/leaf.bmp")["Body"].read()
    response = http.post(
        U, files={"file": ("leaf.bmp", data, "image/bmp")}, headers={"x-api-key": KEY}
    )
    assert response.status_code == 200
    assert response.json()[0]["key"] == "nature/leaf.bmp"
    assert response.json()[0]["score"] == pytest.approx(1.0, abs=1e-4)


def test_unread_bodies_over_the_limit_are_refused_before_reading(http: TestClient) -> None:
    """A declared Content-Length over the limit is answered at once, with the connection closed."""
    sent = []

    def body() -> Iterator[bytes]:
        for _ in range(100):
            sent.append(1)
            yield b" " * 65536

    request = http.build_request(
        "POST",
        S,
        content=body(),
        headers={
            "content-type": "application/json",
            "content-length": str(100 * 65536),
            "x-api-key": KEY,
        },
    )
    response = http.send(request)
    assert response.status_code == 413 and response.headers["connection"] == "close"
    assert response.json()["detail"].startswith("request body exceeds the limit")
    assert len(sent) < 100


@pytest.mark.parametrize("size", [(100_000, 1), (901, 7), (7, 1001), (2000, 3), (640, 32)])
def test_long_strips_are_cut_to_what_the_model_sees(embedder, size: tuple[int, int]) -> None:  # type: ignore[no-untyped-def]
    from image_search.model import images

    picture = random_image(5, size=size)
    cut = images.decode(encode(picture), max_pixels=10**8)
    assert max(cut.size) <= images.MAX_ASPECT_RATIO * min(cut.size) + 1
    if max(size) <= 2000:  # the whole strip can still be embedded here, to compare
        whole, kept = embedder.embed_images([picture]), embedder.embed_images([cut])
        assert float((whole @ kept.T)[0, 0]) > 0.9999


def test_payload_helpers_are_what_they_claim(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)
    assert Image.open(io.BytesIO(png_claiming(65535, 65535))).size == (65535, 65535)
    assert Image.open(io.BytesIO(gif_claiming(65535, 65535))).size == (65535, 65535)
    assert len(padded_png(LIMIT)) == LIMIT
    assert Image.open(io.BytesIO(padded_png(LIMIT))).format == "PNG"
