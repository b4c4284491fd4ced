"""The image tower's loader: armed at warm-up, it starts after the first text answer, for an
upload, or on its timer, and never before one of them (issue 23: text answers first)."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from image_search.serve.image_tower import ImageTowerLoader


class Towers:
    """The part of an embedder the loader uses; ``load`` blocks until ``release`` is set."""

    def __init__(self) -> None:
        self.image_ready = False
        self.loading = threading.Event()
        self.release = threading.Event()

    def load(self) -> Towers:
        self.loading.set()
        self.release.wait(30)
        self.image_ready = True
        return self


@pytest.fixture
def towers() -> Any:
    made = Towers()
    yield made
    made.release.set()


def loader(towers: Towers, **kwargs: Any) -> ImageTowerLoader:
    return ImageTowerLoader(lambda: towers, **kwargs)  # type: ignore[arg-type,return-value]


def test_armed_it_waits_for_the_first_text_answer(towers: Towers) -> None:
    tower = loader(towers)
    tower.start_later(60)
    assert not towers.loading.wait(0.2)  # not before the first answer
    assert tower.state == "loading"
    tower.answered()
    assert towers.loading.wait(10)
    towers.release.set()
    tower.wait()
    assert tower.state == "ready"


def test_armed_an_upload_starts_it_and_gets_a_503_while_it_loads(towers: Towers) -> None:
    from image_search.errors import ImageModelLoadingError

    tower = loader(towers, wait=0.1)
    tower.start_later(60)
    with pytest.raises(ImageModelLoadingError, match="still loading"):
        tower.wait()
    assert towers.loading.is_set()


def test_armed_with_no_request_the_timer_starts_it(towers: Towers) -> None:
    tower = loader(towers)
    tower.start_later(0)
    assert towers.loading.wait(10)


def test_not_armed_nothing_starts_it(towers: Towers) -> None:
    """Without a warm-up (the CLI, tests) an answer loads nothing; an upload loads the tower
    itself, in ``embed_images``."""
    tower = loader(towers)
    tower.answered()
    tower.wait()
    assert not towers.loading.wait(0.2)
