"""The benchmark's code paths at toy sizes (figures meaningless; no timing is asserted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.paths import ROOT


def run_bench(tmp_path: Path, *args: str) -> tuple[subprocess.CompletedProcess[str], dict]:  # type: ignore[type-arg]
    env = {**os.environ, "BENCH_RESULTS_DIR": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,  # a hang guard: the smoke run took 3.5 min at load 4, over 10 at load 15
    )
    assert done.returncode in (0, 1), done.stderr[-3000:]
    results = sorted(tmp_path.glob("smoke*-2*.json"))
    assert len(results) == 1, done.stdout[-2000:]
    # A section that raised exits 1 too (as a missed target does) and saves "…-incomplete".
    assert "incomplete" not in results[0].name, done.stderr[-3000:]
    return done, json.loads(results[0].read_text())


def test_scale_section_writes_table_json_and_summary(tmp_path: Path) -> None:
    done, document = run_bench(tmp_path, "--only", "scale", "--check")
    names = [row["name"] for row in document["rows"]]
    for kind in ("flat (auto)", "hnsw", "ivf-sq8", "ivf-pq"):
        assert f"{kind} recall@10" in names and f"{kind} search p50" in names
    checked = [row for row in document["rows"] if row["ok"] is not None]
    assert {row["name"] for row in checked} == {
        "ivf-sq8 resident",
        "ivf-sq8 search p50",
        "ivf-sq8 recall@10",
    }
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith("bench smoke-scale: ")
    assert done.returncode == (1 if "missed" in last else 0)
    assert "| figure |" in document["markdown"]


def test_unknown_section_is_refused(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke", "--only", "nope"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 2 and "nope" in done.stderr


@pytest.mark.slow
def test_every_section_runs_end_to_end(tmp_path: Path) -> None:
    """Build from moto S3, HTTP search through uvicorn, cold start, the engines (local and a
    real local Ray) and the build stages: every figure present."""
    _, document = run_bench(tmp_path)
    groups = {row["group"] for row in document["rows"]}
    for runtime in ("torch", "onnx"):  # both runtimes in the one run
        for part in ("build 6 JPEGs", "text search, 1k", "image search", "cold start"):
            assert any(g.startswith(part) and g.endswith(runtime) for g in groups), (part, runtime)
    assert any(group.startswith("engines") for group in groups)
    assert any(group.startswith("build stages") for group in groups)
    assert any(group.startswith("runtimes cold start") for group in groups)
    onnx = [row for row in document["rows"] if row["name"].endswith(", onnx")]
    assert len(onnx) == 9 and all(row["ratio"] > 0 for row in onnx)  # each against torch's
    assert any(group.startswith("runtimes: ONNX Runtime threads") for group in groups)
    ratios = [row for row in document["rows"] if row["target"].startswith("ratio")]
    # per runtime: text and image search, build, cold start; the peer's exact-index search; and
    # Ray against the local engine
    assert len(ratios) == 10 and all(row["ratio"] > 0 for row in ratios)
    (build,) = [row for row in document["rows"] if row["name"].endswith("onnx against torch")]
    (peer,) = [row for row in document["rows"] if row["name"].startswith("ours (onnx, flat)")]
    assert build["ratio"] > 0 and peer["ratio"] > 0


def test_stages_section_measures_plan_and_merge(tmp_path: Path) -> None:
    _, document = run_bench(tmp_path, "--only", "stages")
    rows = {row["name"]: row for row in document["rows"]}
    for name in ("plan (diff, shards, save)", "merge (vectors, index, publish)"):
        assert rows[name]["value"] > 0 and rows[name]["unit"] == "s"
    for name in ("plan peak memory", "merge peak memory"):
        assert rows[name]["value"] > 0 and rows[name]["unit"] == "MiB"


def test_duplicates_section_reports_time_memory_and_planted_copies(tmp_path: Path) -> None:
    _, document = run_bench(tmp_path, "--only", "duplicates")
    rows = {(row["group"], row["name"]): row["value"] for row in document["rows"]}
    for size in ("3k", "21k"):  # the exact scan, then buckets by coarse centroid
        group = f"duplicates {size} (cosine ≥ 0.95)"
        assert rows[(group, "pass")] > 0 and rows[(group, "peak resident during the pass")] > 0
        assert rows[(group, "planted copies found")] == 1.0


@pytest.mark.slow
def test_scale_command_publishes_and_measures_a_cold_start(tmp_path: Path) -> None:
    """``python -m bench scale`` end to end at the smallest size an IVF type trains at."""
    out = tmp_path / "scale.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench", "scale", "--count", "25000", "--index-type", "ivf-pq"]
        + ["--queries", "20", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    figures = json.loads(out.read_text())
    assert figures["count"] == 25000 and figures["index_type"] == "ivf-pq"
    assert figures["embedder"] == "OnnxEmbedder"
    for name in ("cold_start_s", "rss_mb", "search_p50_ms", "recall_at_10", "index_bytes"):
        assert figures[name] > 0, name
    assert done.stdout.strip().splitlines()[-1].startswith("bench scale: count=25000 ")


def test_pqtune_prints_a_row_for_each_setting_and_restores_the_service_settings(
    tmp_path: Path,
) -> None:
    """The sweep behind ivf-pq's settings, at the smallest size an IVF index trains at."""
    from bench import pqtune
    from image_search.index import ivf_pq

    before = ivf_pq.PQ_NPROBE, ivf_pq.RERANK_FACTOR
    args = pqtune.parse(
        ["--count", "20000", "--nprobe", "1,8", "--factor", "1,20", "--queries", "30"]
        + ["--work", str(tmp_path)]
    )
    rows = list(pqtune.sweep(args))
    assert [(r["nprobe"], r["candidates_per_result"]) for r in rows] == [
        (1, 1),
        (1, 20),
        (8, 1),
        (8, 20),
    ]
    recall = {(r["nprobe"], r["candidates_per_result"]): r["recall_at_10"] for r in rows}
    # More lists and more candidates never find fewer of the true neighbours on this data.
    assert recall[(8, 20)] >= recall[(1, 1)] and recall[(8, 20)] > 0.5
    assert (ivf_pq.PQ_NPROBE, ivf_pq.RERANK_FACTOR) == before
    assert list(tmp_path.iterdir()) == []


def test_the_scale_summary_checks_every_target_the_issue_sets() -> None:
    from bench.scalecold import summary

    met = {
        "count": 10_000_000,
        "index_type": "ivf-pq",
        "cold_start_s": 6.0,
        "rss_mb": 3000.0,
        "search_p50_ms": 4.0,
        "recall_at_10": 0.95,
        "index_bytes": 900_000_000,
    }
    assert summary(met).endswith("targets: met")
    assert summary({**met, "index_bytes": 1_200_000_000}).endswith("targets: missed index_bytes")
    assert summary({**met, "recall_at_10": 0.85}).endswith("targets: missed recall_at_10")
    assert "targets" not in summary({**met, "count": 25_000})


@pytest.mark.slow
def test_ingest_section_compares_ingest_with_the_build_over_the_same_images(
    tmp_path: Path,
) -> None:
    _, document = run_bench(tmp_path, "--only", "ingest", "--check")
    rows = {row["name"]: row for row in document["rows"]}
    build = rows["build from scratch, the same images"]
    ingest = rows["ingest: S3 notifications → segments"]
    assert build["unit"] == ingest["unit"] == "img/s" and build["value"] > 0
    assert ingest["floor"] == build["value"] and ingest["ratio"] > 0
    assert ingest["target"] == "≥ 0.8× the build" and ingest["ok"] is not None
    assert rows["embed_images inside ingest"]["value"] > 0
