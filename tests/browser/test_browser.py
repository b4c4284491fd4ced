"""The search page in a real browser: Debian's headless Chromium driven by Playwright, against
the app served by uvicorn on a moto-backed index (the combined searches' "more like this", "less
like this" and "More results" too). ``make test`` installs Chromium where it can (Debian, as
root); elsewhere these tests are skipped with one line saying how to run them, except under CI,
where a missing Chromium fails the run."""

from __future__ import annotations

import base64
import os
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from image_search.config import get_settings
from tests.support.factories import skimage_photos
from tests.support.paths import ROOT
from tests.support.service import point_at_index

pytestmark = pytest.mark.browser

CHROMIUM = os.environ.get("IMAGE_SEARCH_CHROMIUM", "/usr/bin/chromium")
# Without the networking flags Chromium keeps calling home, which a closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = ROOT / "test-artifacts"
API_KEY = "browser-test-key"
PREFIX = "/v1"  # the page must work under a prefix, as behind an API Gateway stage
UPLOAD_LIMIT = 400_000
TIMEOUT_MS = 15_000
# Browsers other than Safari cannot show TIFF: those thumbnails must fail visibly, not silently.
NO_BROWSER_PREVIEW = (".tif", ".tiff")
MISSING = (
    f"no Chromium at {CHROMIUM}: the browser tests need it. Run `apt-get install chromium` as "
    "root (or set IMAGE_SEARCH_CHROMIUM=/path/to/chromium), then `make test`"
)
if not os.access(CHROMIUM, os.X_OK):
    if os.environ.get("CI"):
        pytest.fail(MISSING, pytrace=False)
    pytest.skip(MISSING, allow_module_level=True)

SETTLED = """() => {
  const images = [...document.querySelectorAll('#grid img')];
  // An image that failed is complete before its error handler has marked the card: wait for both.
  const settled = (img) =>
    img.complete && (img.naturalWidth > 0 || img.closest('li').classList.contains('broken'));
  // While a search is under way the grid still shows the previous results.
  const busy = document.getElementById('results').hasAttribute('aria-busy');
  return !busy && images.length > 0 && images.every(settled);
}"""


@pytest.fixture(scope="module")
def server(indexed_bucket: str, tiny_model: Path, tmp_path_factory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    """The app on a free loopback port, in a thread; yields the page's URL."""
    with serving(indexed_bucket, model=tiny_model, cache=tmp_path_factory.mktemp("browser")) as url:
        yield url


@contextmanager
def serving(bucket: str, *, model: Path, cache: Path) -> Iterator[str]:
    """The app over ``bucket``'s index, with API keys and a prefix, served by uvicorn."""
    import uvicorn

    from image_search.serve.api import create_app
    from image_search.serve.service import get_service

    with pytest.MonkeyPatch.context() as env:
        env.setenv("IMAGE_SEARCH_API_KEYS", API_KEY)
        env.setenv("IMAGE_SEARCH_API_PREFIX", PREFIX)
        env.setenv("IMAGE_SEARCH_MAX_UPLOAD_BYTES", str(UPLOAD_LIMIT))
        point_at_index(env, bucket=bucket, model=model, cache=cache)
        get_service().current()  # load the index before the first request
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        uv = uvicorn.Server(uvicorn.Config(create_app(), log_level="warning", lifespan="off"))
        thread = threading.Thread(target=uv.run, kwargs={"sockets": [listener]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not uv.started and time.monotonic() < deadline:
            time.sleep(0.05)
        assert uv.started, "uvicorn did not start"
        try:
            yield f"http://127.0.0.1:{port}{PREFIX}/"
        finally:
            uv.should_exit = True
            thread.join(timeout=10)
            listener.close()
            get_settings.cache_clear()
            get_service.cache_clear()


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser, server: str):  # type: ignore[no-untyped-def]
    """A fresh page with the API key already saved, as a returning user has it; every request
    it makes is recorded in ``page.requested``."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(f"localStorage.setItem('image-search.api-key', '{API_KEY}')")
    tab = context.new_page()
    tab.requested = []
    tab.on("request", lambda request: tab.requested.append(request.url))
    tab.goto(server)
    tab.wait_for_selector("#folder option[value='animals']", state="attached")
    yield tab
    context.close()


def results(page) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    """The result cards once every thumbnail has loaded or failed; checks that each one that a
    browser can show did load (naturalWidth > 0) and each one it cannot says so."""
    page.wait_for_function(SETTLED)
    hits = page.eval_on_selector_all(
        "#grid li",
        """items => items.map((li) => ({
            alt: li.querySelector('img').alt,
            folder: li.querySelector('.folder').textContent,
            key: li.querySelector('.key').title,
            loaded: li.querySelector('img').naturalWidth > 0,
            marked_broken: li.classList.contains('broken'),
        }))""",
    )
    for hit in hits:
        viewable = not str(hit["key"]).lower().endswith(NO_BROWSER_PREVIEW)
        assert hit["loaded"] == viewable and hit["marked_broken"] != viewable, hit
    return hits


def test_typing_a_query_shows_k_images_that_load(page, server: str):  # type: ignore[no-untyped-def]
    page.get_by_label("Number of results").select_option("5")
    page.get_by_label("Describe the image").press_sequentially("a cat", delay=30)  # no Enter

    hits = results(page)

    assert len(hits) == 5
    assert all(hit["alt"] for hit in hits)
    assert "searched: all folders" in page.inner_text("#summary")
    assert "embed" in page.inner_text("#timings") and "ms" in page.inner_text("#timings")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "search-results.png"), full_page=True)
    # Everything the page needed came from this machine: the app and the S3 behind the URLs.
    assert {urlsplit(url).hostname for url in page.requested} == {"127.0.0.1"}


def test_a_folder_named_in_the_query_is_marked_auto_detected(page):  # type: ignore[no-untyped-def]
    page.get_by_label("Describe the image").fill("animal pictures")
    page.keyboard.press("Enter")

    hits = results(page)

    assert {hit["folder"] for hit in hits} == {"animals"}
    assert "searched: animals (auto-detected)" in page.inner_text("#summary")


def test_all_folders_turns_detection_off(page):  # type: ignore[no-untyped-def]
    page.get_by_label("Folders").select_option("*")
    page.get_by_label("Number of results").select_option("20")
    page.get_by_label("Describe the image").fill("animal pictures")
    page.keyboard.press("Enter")

    hits = results(page)

    assert len({hit["folder"] for hit in hits}) > 1
    assert "searched: all folders" in page.inner_text("#summary")


DROP = """(data) => {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  const files = new DataTransfer();
  files.items.add(new File([bytes], 'cat.png', { type: 'image/png' }));
  const zone = document.getElementById('drop-zone');
  const options = { dataTransfer: files, bubbles: true, cancelable: true };
  zone.dispatchEvent(new DragEvent('drop', options));
}"""


@pytest.mark.parametrize("how", ["picker", "drop"])
def test_uploading_an_indexed_photo_finds_it_first(page, how: str):  # type: ignore[no-untyped-def]
    cat = skimage_photos()["chelsea.png"]
    if how == "picker":
        files = [{"name": "cat.png", "mimeType": "image/png", "buffer": cat}]
        page.set_input_files("#file", files=files)
    else:
        page.evaluate(DROP, base64.b64encode(cat).decode())

    hits = results(page)

    assert hits[0]["key"].endswith("/animals/cat.png")
    assert "like cat.png" in page.inner_text("#summary")
    assert page.is_visible("#query-image")


def test_clicking_a_result_shows_images_similar_to_it(page):  # type: ignore[no-untyped-def]
    page.get_by_label("Number of results").select_option("5")
    page.get_by_label("Describe the image").fill("rocket")
    page.keyboard.press("Enter")
    first = results(page)[0]

    page.locator("#grid li button").first.click()
    page.wait_for_function(
        "key => document.querySelector('#summary').textContent.includes('similar to ' + key)",
        arg=first["key"].split("/", 3)[3],
    )
    similar = results(page)

    assert len(similar) == 5
    assert first["key"] not in {hit["key"] for hit in similar}


def test_results_work_from_the_keyboard(page):  # type: ignore[no-untyped-def]
    page.get_by_label("Describe the image").focus()
    page.keyboard.type("coffee")
    page.keyboard.press("Enter")
    results(page)
    page.locator("#grid li button").first.focus()
    page.keyboard.press("Enter")

    page.wait_for_function("document.querySelector('#summary').textContent.includes('similar')")
    assert results(page)


@pytest.mark.parametrize(
    ("name", "data", "message"),
    [
        ("notes.png", b"this is not an image", "could not be used as an image"),
        ("huge.png", b"\x89PNG" + bytes(UPLOAD_LIMIT + 1), "too large"),
    ],
)
def test_a_bad_file_shows_a_clear_message(page, name: str, data: bytes, message: str):  # type: ignore[no-untyped-def]
    page.set_input_files("#file", files=[{"name": name, "mimeType": "image/png", "buffer": data}])

    error = page.get_by_role("alert")
    error.wait_for()

    assert message in error.inner_text()
    assert page.locator("#grid li").count() == 0


def test_without_the_key_the_page_asks_for_it(browser, server: str):  # type: ignore[no-untyped-def]
    context = browser.new_context()
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(server)
    page.get_by_role("alert").wait_for()
    assert "needs an API key" in page.get_by_role("alert").inner_text()

    page.get_by_label("API key").fill(API_KEY)
    page.get_by_role("button", name="Save").click()
    page.wait_for_selector("#folder option[value='animals']", state="attached")
    page.get_by_label("Describe the image").fill("a cat")
    page.keyboard.press("Enter")

    assert results(page)
    assert page.evaluate("localStorage.getItem('image-search.api-key')") == API_KEY
    context.close()


def test_no_index_yet_is_explained(page):  # type: ignore[no-untyped-def]
    # The API's 503 itself is tested in test_api.py; here only how the page shows it.
    detail = "no index published under s3://bucket/index/"
    page.route(
        "**/image_search/search",
        lambda route: route.fulfill(status=503, json={"detail": detail}),
    )
    page.get_by_label("Describe the image").fill("a cat")
    page.keyboard.press("Enter")

    page.get_by_role("alert").wait_for()
    assert page.get_by_role("alert").inner_text() == (
        f"The search index is not ready yet: {detail}"
    )


def test_every_control_has_a_label(page):  # type: ignore[no-untyped-def]
    unlabelled = page.eval_on_selector_all(
        "input, select, textarea",
        "controls => controls.filter((c) => !c.labels || !c.labels.length).map((c) => c.id)",
    )
    assert unlabelled == []


# ---- combined searches: "more like this" / "less like this" on the cards, and every page ----


def relative(hit: dict) -> str:  # type: ignore[type-arg]
    """The key as the API names it (the card's title is the s3:// path)."""
    return str(hit["key"]).split("/", 3)[3]


def query(server: str, body: dict) -> list[str]:  # type: ignore[type-arg]
    answer = httpx.post(
        f"{server}image_search/query", json=body, headers={"x-api-key": API_KEY}, timeout=30
    )
    assert answer.status_code == 200, answer.text
    return [hit["key"] for hit in answer.json()["results"]]


def search(page, text: str, k: str = "5") -> list[dict]:  # type: ignore[no-untyped-def,type-arg]
    page.get_by_label("Number of results").select_option(k)
    page.get_by_label("Folders").select_option("*")
    page.get_by_label("Describe the image").fill(text)
    page.keyboard.press("Enter")
    return results(page)


def wait_for_summary(page, text: str) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "text => document.querySelector('#summary').textContent.includes(text)", arg=text
    )


def test_more_like_this_adds_the_image_to_the_search(page, server: str) -> None:  # type: ignore[no-untyped-def]
    first = search(page, "a cat")
    liked = relative(first[1])

    page.get_by_role("button", name=f"Add {liked} to the search").click()
    wait_for_summary(page, "+ 1 liked")
    hits = [relative(hit) for hit in results(page)]

    expected = query(
        server, {"positive": [{"text": "a cat"}, {"key": liked}], "k": 5, "folder": "*"}
    )
    assert hits == expected and liked not in hits
    chips = page.locator("#parts li").all_inner_texts()
    assert [chip.split("\n")[0] for chip in chips] == ["“a cat”", f"like {liked}"]
    assert any("image_search/query" in url for url in page.requested)


def test_less_like_this_moves_away_and_removing_it_undoes_it(page, server: str) -> None:  # type: ignore[no-untyped-def]
    first = [relative(hit) for hit in search(page, "a rocket")]
    disliked = first[0]

    page.get_by_role("button", name=f"Search away from {disliked}").click()
    wait_for_summary(page, "− 1 disliked")
    hits = [relative(hit) for hit in results(page)]

    body = {"positive": [{"text": "a rocket"}], "k": 5, "folder": "*"}
    negative = [{"key": disliked, "weight": 0.5}]
    assert hits == query(server, {**body, "negative": negative})
    assert disliked not in hits

    page.get_by_role("button", name=f"Remove not like {disliked} from the search").click()
    page.wait_for_function("() => document.getElementById('parts').hidden")
    results(page)
    assert [relative(hit) for hit in results(page)] == query(server, body)


def test_more_results_walks_every_page_without_repeating(page, server: str) -> None:  # type: ignore[no-untyped-def]
    first = search(page, "a tree")
    page.get_by_role("button", name=f"Add {relative(first[0])} to the search").click()
    wait_for_summary(page, "+ 1 liked")
    seen = [relative(hit) for hit in results(page)]
    more = page.get_by_role("button", name="More results")
    while more.is_visible():
        count = len(seen)
        more.click()
        page.wait_for_function("n => document.querySelectorAll('#grid li').length > n", arg=count)
        seen = [relative(hit) for hit in results(page)]
    assert len(seen) == len(set(seen)) > 5
    # Page after page, the ranking of one answer as deep as the index: every image but the liked.
    body = {"positive": [{"text": "a tree"}, {"key": relative(first[0])}], "folder": "*"}
    assert seen == query(server, {**body, "k": 100})
