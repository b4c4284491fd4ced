"""How often the service looks at current.json: the poll interval, refresh as an upper bound,
either at 0 turning polling off (refresh 0: every check)."""

from __future__ import annotations

import pytest

from image_search.config import Settings
from image_search.serve.lifecycle import check_interval


@pytest.mark.parametrize(
    ("poll", "refresh", "every"),
    [
        (10, 300, 10),  # the defaults: a conditional GET every 10 s
        (10, 0.2, 0.2),  # a shorter refresh still wins
        (0, 300, 300),  # polling off: checks for new builds as before
        (10, 0, None),  # refresh off: no checks at all once a build is served
    ],
)
def test_the_interval(poll: float, refresh: float, every: float | None) -> None:
    settings = Settings(bucket="bucket", poll_seconds=poll, refresh_seconds=refresh)  # type: ignore[call-arg]
    assert check_interval(settings) == every
