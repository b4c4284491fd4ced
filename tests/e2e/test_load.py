"""A 10-second version of ``make load``: 32 clients against uvicorn on loopback: no errors, every
kind of request answered, no memory growth."""

from __future__ import annotations

import os

from bench.load import MAX_RSS_GROWTH, PHOTOS, run_load, upload_images, uvicorn_server


def test_ten_seconds_of_mixed_load_without_errors_or_growth(api_env, indexed_bucket) -> None:  # type: ignore[no-untyped-def]
    env = {
        name: value
        for name, value in os.environ.items()
        if name.startswith(("AWS_", "IMAGE_SEARCH_"))
    }
    with uvicorn_server(env) as (url, pid):
        report = run_load(
            url, pid=pid, clients=32, seconds=10, warmup=8, images=upload_images(PHOTOS)
        )
    print("\n".join(report.lines()))
    # Every answer was a 200 with a non-empty list (bench/load.py counts anything else).
    assert report.errors == 0, report.error_samples
    # All three kinds of request were answered, many times each, while the others ran.
    assert set(report.kinds) == {"search", "upload", "folders"}
    assert all(stats.count >= 20 for stats in report.kinds.values()), report.kinds
    # Memory does not grow with the requests served: not at the end, not at any moment between.
    assert report.rss_growth <= MAX_RSS_GROWTH
    ceiling = report.rss_after_warmup_mb * (1 + MAX_RSS_GROWTH)
    assert max(report.rss_samples_mb) <= ceiling, report.rss_samples_mb
