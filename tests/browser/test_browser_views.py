"""The page's sub-folder lists and near-duplicates view in Chromium, over a bucket with nested
folders and copies (tests/integration/test_duplicates_api.py, grouped at 0.999 for the tiny
model)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.browser import test_browser as chromium
from tests.browser.test_browser import ARTIFACTS, results, serving
from tests.integration.test_duplicates_api import ASTRONAUT, CAT, SCORE, copies
from tests.support.buckets import published_bucket

pytestmark = pytest.mark.browser
# The browser and a fresh page with the key saved, as test_browser.py makes them (for this
# module's server).
browser = chromium.browser
page = chromium.page


@pytest.fixture(scope="module")
def server(s3_endpoint: str, tiny_model: Path, tmp_path_factory) -> Iterator[str]:  # type: ignore[no-untyped-def]
    cache = tmp_path_factory.mktemp("views")
    bucket = published_bucket(copies(), model=tiny_model, cache=cache, duplicate_score=SCORE)
    with serving(bucket, model=tiny_model, cache=cache) as url:
        yield url


def test_a_sub_folder_narrows_the_search(page) -> None:  # type: ignore[no-untyped-def]
    page.get_by_label("Folders").select_option("animals")
    inside = page.get_by_label("Inside animals/")
    inside.wait_for()
    assert inside.locator("option").all_inner_texts() == ["All of animals/", "small (1)"]
    inside.select_option("animals/small/")
    page.get_by_label("Describe the image").fill("a cat")
    page.keyboard.press("Enter")

    hits = results(page)

    assert [hit["key"].split("/", 3)[3] for hit in hits] == ["animals/small/cat.jpg"]
    assert "searched: animals/small/" in page.inner_text("#summary")

    page.get_by_label("Folders").select_option("nature")  # another folder: the lists go
    page.wait_for_function("() => !document.getElementById('subfolder-1')")


GROUPS = """() => [...document.querySelectorAll('#groups > li')].map((group) => ({
  heading: group.querySelector('h3').textContent,
  keys: [...group.querySelectorAll('.key')].map((key) => key.title.split('/').slice(3).join('/')),
  loaded: [...group.querySelectorAll('img')].every((img) => img.complete && img.naturalWidth > 0),
}))"""


def test_the_duplicates_view_shows_each_group_with_its_images(page) -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("button", name="Find duplicates").click()
    page.wait_for_function(
        """() => {
          const images = [...document.querySelectorAll('#groups img')];
          return images.length === 5 && images.every((i) => i.complete && i.naturalWidth > 0);
        }"""
    )

    groups = page.evaluate(GROUPS)

    assert [sorted(group["keys"]) for group in groups] == [CAT, ASTRONAUT]
    assert groups[0]["heading"].startswith("Group 1: 3 images · best match 1.000")
    assert all(group["loaded"] for group in groups)
    assert f"2 groups of near-identical images · similarity ≥ {SCORE}" in page.inner_text(
        "#summary"
    )
    assert page.is_hidden("#grid") and page.is_hidden("#more-groups")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "duplicates.png"), full_page=True)

    page.get_by_label("Folders").select_option("vehicles")  # the view follows the folder
    page.wait_for_function("() => document.querySelector('#summary').textContent.startsWith('No ')")
    assert page.locator("#groups > li").count() == 0


def test_a_duplicate_opens_images_similar_to_it(page) -> None:  # type: ignore[no-untyped-def]
    page.get_by_role("button", name="Find duplicates").click()
    page.wait_for_selector("#groups > li button")
    page.locator("#groups > li button").first.click()
    page.wait_for_function(
        "() => document.querySelector('#summary').textContent.includes('similar')"
    )
    assert results(page) and page.is_hidden("#groups")
