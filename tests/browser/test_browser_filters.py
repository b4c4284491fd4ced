"""The page's photo filters in Chromium: the camera picker filled from /facets, a date range, and
every search (text, "more like this", a click on a result) sending them; over a bucket of camera
JPEGs whose EXIF says when and with what they were taken, built by the real build."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import test_browser as chromium
from tests.browser.test_browser import API_KEY, ARTIFACTS, SETTLED, TIMEOUT_MS, serving
from tests.support.buckets import published_bucket
from tests.support.factories import camera_jpeg, encode, random_image

pytestmark = pytest.mark.browser
browser = chromium.browser

# Four photos from a Canon in 2023, three from a Nikon in 2024, one whose file has no EXIF (dated
# by its upload: today), each in a folder of its year.
CANON = {f"trips/2023/canon-{n}.jpg": (2023, n) for n in range(4)}
NIKON = {f"trips/2024/nikon-{n}.jpg": (2024, n) for n in range(3)}


def layout() -> dict[str, bytes]:
    photos = {
        key: camera_jpeg(
            20 + n, make="Canon", model="Canon EOS R5", original=f"{year}:07:1{n} 10:00:00"
        )
        for key, (year, n) in CANON.items()
    }
    photos |= {
        key: camera_jpeg(
            30 + n,
            make="NIKON",
            model="NIKON D850",
            original=f"{year}:03:0{n + 1} 09:00:00",
        )
        for key, (year, n) in NIKON.items()
    }
    return {**photos, "trips/scan.jpg": encode(random_image(50), "JPEG")}


@pytest.fixture(scope="module")
def server(s3_endpoint: str, tiny_model: Path, tmp_path_factory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    cache = tmp_path_factory.mktemp("filters")
    bucket = published_bucket(layout(), model=tiny_model, cache=cache)
    with serving(bucket, model=tiny_model, cache=cache) as url:
        yield url


@pytest.fixture
def page(browser, server: str):  # type: ignore[no-untyped-def]
    """A fresh page with the API key saved, once the folders and the cameras are listed."""
    context = browser.new_context(viewport={"width": 1200, "height": 900})
    context.set_default_timeout(TIMEOUT_MS)
    context.add_init_script(f"localStorage.setItem('image-search.api-key', '{API_KEY}')")
    tab = context.new_page()
    tab.goto(server)
    tab.wait_for_selector("#folder option[value='trips']", state="attached")
    tab.wait_for_selector("#camera option[value='NIKON D850']", state="attached")
    yield tab
    context.close()


def cards(page) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    page.wait_for_function(SETTLED)
    return page.eval_on_selector_all(
        "#grid li",
        """items => items.map((li) => ({
            key: li.querySelector('.key').title,
            photo: (li.querySelector('.photo') || {}).textContent || '',
        }))""",
    )


def search(page, text: str) -> None:  # type: ignore[no-untyped-def]
    page.get_by_label("Number of results").select_option("20")
    page.get_by_label("Describe the image").fill(text)
    page.keyboard.press("Enter")


def wait_summary(page, words: str) -> None:  # type: ignore[no-untyped-def]
    page.wait_for_function(
        "words => document.querySelector('#summary').textContent.includes(words)", arg=words
    )


def test_the_camera_picker_lists_the_cameras_with_their_counts(page) -> None:  # type: ignore[no-untyped-def]
    camera = page.get_by_label("Camera")
    assert camera.locator("option").all_inner_texts() == [
        "Any camera",
        "Canon EOS R5 (4)",
        "NIKON D850 (3)",
    ]
    assert page.get_by_label("Taken from").get_attribute("min") == "2023-01-01"


def test_choosing_a_camera_keeps_its_photos_only(page) -> None:  # type: ignore[no-untyped-def]
    search(page, "a photo")
    assert len(cards(page)) == 8
    page.get_by_label("Camera").select_option("NIKON D850")
    wait_summary(page, "only photos NIKON D850")

    found = cards(page)

    assert {hit["key"].split("/", 3)[3] for hit in found} == set(NIKON)
    assert all(hit["photo"].endswith("NIKON D850") for hit in found)
    assert all(hit["photo"].startswith("2024-03-0") for hit in found)
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "search-filters.png"), full_page=True)


def test_a_date_range_keeps_the_photos_taken_in_it_and_updates_the_cameras(page) -> None:  # type: ignore[no-untyped-def]
    search(page, "a photo")
    cards(page)
    page.get_by_label("Taken from").fill("2023-07-11")
    page.get_by_label("Taken until").fill("2023-07-12")
    wait_summary(page, "only photos taken 2023-07-11 to 2023-07-12")

    found = cards(page)

    # The 11th and the 12th, whole days: canon-1 and canon-2.
    assert sorted(hit["key"].rsplit("/", 1)[1] for hit in found) == ["canon-1.jpg", "canon-2.jpg"]
    page.wait_for_selector("#camera option:text('Canon EOS R5 (2)')", state="attached")
    assert "NIKON D850" not in page.get_by_label("Camera").inner_text()

    page.get_by_role("button", name="Any photo").click()
    page.wait_for_function("() => !document.querySelector('#summary').textContent.includes('only')")
    assert len(cards(page)) == 8


def test_more_like_this_and_a_click_keep_the_filters(page) -> None:  # type: ignore[no-untyped-def]
    page.get_by_label("Camera").select_option("Canon EOS R5")
    search(page, "a photo")
    wait_summary(page, "only photos Canon EOS R5")
    first = cards(page)[0]["key"].split("/", 3)[3]

    page.get_by_role("button", name=f"Add {first} to the search").click()
    wait_summary(page, "+ 1 liked")
    liked = cards(page)
    assert liked and all(hit["photo"].endswith("Canon EOS R5") for hit in liked)
    assert first not in {hit["key"].split("/", 3)[3] for hit in liked}

    page.locator("#grid li button.thumb").first.click()
    wait_summary(page, "similar to")
    similar = cards(page)
    assert similar and all(hit["photo"].endswith("Canon EOS R5") for hit in similar)
