"""Index lifecycle while the app runs: new builds are picked up off the request path, broken ones
are refused, old local copies are removed, and a hanging S3 never delays an answer."""

from __future__ import annotations

import gc
import logging
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor

import pytest

from image_search.artefacts import loader
from image_search.build.pipeline import run_build
from image_search.config import get_settings
from image_search.serve import lifecycle
from image_search.serve.service import get_service
from tests.integration.test_faults import S3Proxy
from tests.support.buckets import put
from tests.support.factories import encode, random_image
from tests.support.service import make_api, wait_for_build

REFRESH = 0.2
POINTER = "index/current.json"
# A safety net for answers that must come while S3 hangs, not a timing assertion: a request
# that waited for the hung refresh would wait for the proxy's 60 s.
ANSWER_WITHIN = 30


def build(client, embedder) -> str:  # type: ignore[no-untyped-def]
    report = run_build(get_settings(), client=client, embedder=embedder)
    assert report.build_id
    return report.build_id


@pytest.fixture
def serving(bucket, client, embedder, monkeypatch):  # type: ignore[no-untyped-def]
    """An app serving a first build of one image, refreshing every REFRESH seconds."""
    monkeypatch.setenv("IMAGE_SEARCH_REFRESH_SECONDS", str(REFRESH))
    put(client, bucket, "animals/a.png", encode(random_image(1)))
    first = build(client, embedder)
    api = make_api()
    assert api.get("/health").json()["build_id"] == first
    return api, first


@pytest.fixture
def proxy(s3_endpoint: str, client, monkeypatch):  # type: ignore[no-untyped-def]
    """A proxy the service's S3 client goes through (``client`` still reaches moto directly)."""
    faulty = S3Proxy(s3_endpoint).start()
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", faulty.url)
    yield faulty
    for hold in faulty.holds.values():
        hold.release()
    faulty.stop()


def keys(response) -> set[str]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.text
    return {hit["key"] for hit in response.json()}


def search_all(api):  # type: ignore[no-untyped-def]
    return api.post("/image_search/search", json={"query": "a picture", "k": 100, "folder": "*"})


def test_a_new_build_is_served_after_the_refresh_interval(
    serving, bucket, client, embedder
) -> None:
    api, _ = serving
    put(client, bucket, "nature/b.png", encode(random_image(2)))
    second = build(client, embedder)
    wait_for_build(api, second)
    assert keys(search_all(api)) == {"animals/a.png", "nature/b.png"}


def test_a_corrupt_build_is_refused_and_the_old_one_keeps_serving(
    serving, bucket, client, embedder, caplog
) -> None:
    api, first = serving
    put(client, bucket, "animals/b.png", encode(random_image(2)))
    second = build(client, embedder)
    index_key = f"index/builds/{second}/image_faiss_index.bin"
    client.put_object(Bucket=bucket, Key=index_key, Body=b"not a faiss index")
    with caplog.at_level(logging.ERROR, logger="image_search.serve.lifecycle"):
        get_service().index.refresh()
    assert keys(api.post("/image_search/search", json={"query": "a", "k": 5})) == {"animals/a.png"}
    assert api.get("/health").json()["build_id"] == first
    assert any(
        second in r.getMessage() and "previous index" in r.getMessage() for r in caplog.records
    )


def test_a_damaged_catalog_is_refused_with_its_reason_on_health_and_in_the_503(
    serving, bucket, client, embedder
) -> None:
    api, first = serving
    put(client, bucket, "animals/b.png", encode(random_image(2)))
    second = build(client, embedder)
    keys_key = f"index/builds/{second}/keys.bin"
    whole = client.get_object(Bucket=bucket, Key=keys_key)["Body"].read()
    client.put_object(Bucket=bucket, Key=keys_key, Body=whole[:-3])  # an upload cut short

    get_service().index.refresh()
    assert keys(search_all(api)) == {"animals/a.png"}
    health = api.get("/health").json()
    assert health["build_id"] == first
    assert second in health["problem"] and "keys.bin does not match" in health["problem"]

    fresh = make_api()  # nothing served before: the reason is the 503's
    response = fresh.get("/health")
    assert response.status_code == 503 and "keys.bin does not match" in response.json()["detail"]
    response = fresh.post("/image_search/search", json={"query": "a", "k": 5})
    assert response.status_code == 503 and "damaged" in response.json()["detail"]

    client.put_object(Bucket=bucket, Key=keys_key, Body=whole)  # repaired: served at once
    get_service().index.refresh()
    health = fresh.get("/health").json()
    assert health["build_id"] == second and health["problem"] is None


def test_a_build_from_another_model_is_refused(
    bucket, client, embedder, monkeypatch, tmp_path
) -> None:
    from image_search.model.torch_clip import ClipEmbedder
    from tests.support.factories import save_tiny_clip

    put(client, bucket, "animals/a.png", encode(random_image(1)))
    other = save_tiny_clip(tmp_path / "other", seed=3)
    monkeypatch.setenv("IMAGE_SEARCH_MODEL", str(other))
    get_settings.cache_clear()
    build(client, ClipEmbedder(source=str(other), cache_dir=tmp_path))
    monkeypatch.setenv("IMAGE_SEARCH_MODEL", str(embedder.source))
    response = make_api().get("/health")
    assert response.status_code == 503 and "IMAGE_SEARCH_MODEL" in response.json()["detail"]


# ---- S3 hanging: answers never wait for a refresh ------------------------------------------


def test_a_refresh_hanging_on_s3_does_not_delay_searches(
    bucket, client, embedder, proxy, monkeypatch
) -> None:
    monkeypatch.setenv("IMAGE_SEARCH_REFRESH_SECONDS", str(REFRESH))
    put(client, bucket, "animals/a.png", encode(random_image(1)))
    first = build(client, embedder)
    api = make_api()
    assert api.get("/health").json()["build_id"] == first
    put(client, bucket, "nature/b.png", encode(random_image(2)))
    build(client, embedder)
    hung = proxy.hold(POINTER)  # the next check of current.json hangs
    time.sleep(REFRESH)  # so the next request finds a check due

    with ThreadPoolExecutor(4) as pool:
        answers = [pool.submit(search_all, api) for _ in range(8)]
        assert hung.arrived.wait(ANSWER_WITHIN), "no refresh was started"
        results = [answer.result(timeout=ANSWER_WITHIN) for answer in answers]
        assert not hung.released.is_set()  # all answered while the check still hangs
    assert all(keys(result) == {"animals/a.png"} for result in results)
    hung.release()


def test_requests_arriving_during_the_first_load_wait_for_it(
    bucket, client, embedder, proxy
) -> None:
    put(client, bucket, "animals/a.png", encode(random_image(1)))
    first = build(client, embedder)
    hung = proxy.hold(POINTER)
    api = make_api()
    with ThreadPoolExecutor(3) as pool:
        answers = [pool.submit(api.get, "/health") for _ in range(3)]
        assert hung.arrived.wait(ANSWER_WITHIN)
        hung.release()
        results = [answer.result(timeout=ANSWER_WITHIN) for answer in answers]
    assert [r.status_code for r in results] == [200, 200, 200]
    assert {r.json()["build_id"] for r in results} == {first}


def test_a_first_load_that_hangs_answers_503_after_the_bound(
    bucket, client, embedder, proxy, monkeypatch
) -> None:
    monkeypatch.setattr(lifecycle, "FIRST_LOAD_WAIT_SECONDS", 0.3)
    put(client, bucket, "animals/a.png", encode(random_image(1)))
    first = build(client, embedder)
    hung = proxy.hold(POINTER)
    api = make_api()
    with ThreadPoolExecutor(1) as pool:
        response = pool.submit(api.get, "/health").result(timeout=ANSWER_WITHIN)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert "still loading" in response.json()["detail"]
    hung.release()
    # The load resumes where it hung; until it ends (slow on a busy machine) a request may
    # still get the same 503 after the bound, never anything else.
    deadline = time.monotonic() + ANSWER_WITHIN
    while (health := api.get("/health")).status_code != 200:
        assert health.status_code == 503 and time.monotonic() < deadline, health.text
        time.sleep(0.05)
    assert health.json()["build_id"] == first


# ---- what a swap leaves behind ---------------------------------------------------------------


def test_older_local_copies_are_removed_after_a_swap(serving, bucket, client, embedder) -> None:
    api, first = serving
    cache = get_settings().index_cache_dir
    (cache / "not-a-build").mkdir()  # whatever else is in the folder stays
    assert (cache / first).is_dir()
    put(client, bucket, "nature/b.png", encode(random_image(2)))
    second = build(client, embedder)
    get_service().index.refresh()
    assert api.get("/health").json()["build_id"] == second
    assert sorted(p.name for p in cache.iterdir()) == sorted([second, "not-a-build"])


def test_at_most_two_builds_are_held_during_a_swap(
    serving, bucket, client, embedder, monkeypatch
) -> None:
    api, _ = serving
    alive: list[weakref.ref] = []
    counts: list[tuple[int, int]] = []  # builds alive when a load starts, and when it ends
    real_load = loader.load_build

    def live() -> int:
        gc.collect()
        return sum(ref() is not None for ref in alive)

    def tracked_load(*args, **kwargs):  # type: ignore[no-untyped-def]
        before = live()
        loaded = real_load(*args, **kwargs)
        alive.append(weakref.ref(loaded))
        counts.append((before, live()))
        return loaded

    monkeypatch.setattr(loader, "load_build", tracked_load)
    served = []
    for seed in range(2, 5):
        put(client, bucket, f"nature/{seed}.png", encode(random_image(seed)))
        served.append(build(client, embedder))
        time.sleep(REFRESH)
        wait_for_build(api, served[-1])  # the requests' own checks load it
    # The first load happened before tracking: the first swap started with one untracked build.
    assert counts[0] == (0, 1) and counts[1:] == [(1, 2)] * (len(served) - 1)
    loaded = get_service().index.loaded
    assert live() == 1 and loaded is not None and loaded.base is alive[-1]()


# ---- long-lived servers -------------------------------------------------------------------------


def test_an_idle_long_lived_server_picks_up_a_new_build(bucket, client, embedder, monkeypatch):  # type: ignore[no-untyped-def]
    from fastapi.testclient import TestClient

    from image_search.serve.api import create_app

    monkeypatch.setenv("IMAGE_SEARCH_REFRESH_SECONDS", str(REFRESH))
    put(client, bucket, "animals/a.png", encode(random_image(1)))
    first = build(client, embedder)
    make_api()  # fresh settings and service
    index = get_service().index
    with TestClient(create_app()):  # runs the lifespan, as uvicorn does
        deadline = time.monotonic() + 30
        while index.loaded is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert index.loaded is not None and index.loaded.metadata.build_id == first
        put(client, bucket, "nature/b.png", encode(random_image(2)))
        second = build(client, embedder)
        while index.loaded.metadata.build_id != second and time.monotonic() < deadline + 30:
            time.sleep(0.02)  # no request is made: the timer alone checks
        assert index.loaded.metadata.build_id == second
    timers = [t for t in threading.enumerate() if t.name == "image-search-refresh-timer"]
    for timer in timers:
        timer.join(timeout=10)
    assert not any(t.is_alive() for t in timers), "the timer outlived the server"


# ---- concurrency ---------------------------------------------------------------------------------


def test_searches_in_threads_while_builds_are_published_and_swapped(
    serving, bucket, client, embedder
) -> None:
    api, first = serving
    builds = {first: {"animals/a.png"}}
    answers: list[set[str]] = []
    failures: list[BaseException] = []
    publishing = threading.Event()
    publishing.set()

    def search_until_done() -> None:
        try:
            while publishing.is_set():
                answers.append(keys(search_all(api)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    workers = [threading.Thread(target=search_until_done) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        for seed in range(2, 5):
            key = f"nature/{seed}.png"
            put(client, bucket, key, encode(random_image(seed)))
            build_id = build(client, embedder)
            builds[build_id] = builds[max(builds)] | {key}
            wait_for_build(api, build_id)
    finally:
        publishing.clear()
        for worker in workers:
            worker.join(timeout=60)
    assert failures == []
    # Every answer holds exactly the images of one published build, never a mix.
    assert all(answer in builds.values() for answer in answers)
    assert len({frozenset(a) for a in answers}) >= 3, "the searches did not span the swaps"


# ---- cold start ----------------------------------------------------------------------------------


class _GatedLoad:
    """Wraps the embedder's ``load``: called from the warming thread, it finishes only once the
    index is served (or a bound); from other threads (the index's model check) it just loads."""

    def __init__(self, load, index) -> None:  # type: ignore[no-untyped-def]
        self._load, self._index = load, index
        self._thread = threading.current_thread()
        self.index_loaded_meanwhile = False

    def __call__(self):  # type: ignore[no-untyped-def]
        if threading.current_thread() is not self._thread:
            return self._load()
        deadline = time.monotonic() + ANSWER_WITHIN
        while self._index.loaded is None and time.monotonic() < deadline:
            time.sleep(0.02)
        self.index_loaded_meanwhile = self._index.loaded is not None
        return self._load()


def test_warm_loads_the_index_while_the_model_loads(bucket, client, embedder, monkeypatch):  # type: ignore[no-untyped-def]
    """A cold start pays the longer of model load and index fetch, not their sum: the index
    arrives while the model is still loading (a warm-up that did one after the other would
    wait here for the bound and then find no index)."""
    put(client, bucket, "animals/a.png", encode(random_image(1)))
    first = build(client, embedder)
    make_api()
    service = get_service()
    gate = _GatedLoad(service.embedder.load, service.index)
    monkeypatch.setattr(service.embedder, "load", gate)
    service.warm()
    assert gate.index_loaded_meanwhile
    assert service.current().metadata.build_id == first


def test_a_long_lived_server_loads_model_and_index_as_it_starts(bucket, client, embedder):  # type: ignore[no-untyped-def]
    """uvicorn's lifespan starts both loads before any request, so the first one finds them."""
    from fastapi.testclient import TestClient

    from image_search.serve.api import create_app

    put(client, bucket, "animals/a.png", encode(random_image(1)))
    first = build(client, embedder)
    make_api()
    service = get_service()
    loads = []
    original = service.embedder.load
    service.embedder.load = lambda: loads.append(threading.current_thread().name) or original()  # type: ignore[method-assign]
    try:
        with TestClient(create_app()):
            deadline = time.monotonic() + ANSWER_WITHIN
            while service.index.loaded is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert service.index.loaded is not None
            assert service.index.loaded.metadata.build_id == first
            assert "image-search-warm" in loads  # the model, off the request path
    finally:
        del service.embedder.load
