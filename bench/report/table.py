"""The printed table and the JSON file of a run."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bench.paths import ROOT
from bench.report.stats import Report, Row

RESULTS = Path(os.environ.get("BENCH_RESULTS_DIR") or ROOT / "bench" / "results")


def _number(value: float | None) -> str:
    if value is None:
        return ""
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) < 1 else f"{value:.2f}"


def _cells(row: Row) -> list[str]:
    spread = f"{_number(row.low)}–{_number(row.high)}" if row.low is not None else ""
    verdict = {True: "ok", False: "MISSED", None: ""}[row.ok]
    return [
        row.name,
        f"{_number(row.value)} {row.unit}".strip(),
        spread,
        _number(row.floor),
        f"{row.ratio:.2f}" if row.ratio is not None else "",
        row.target,
        verdict,
    ]


HEADER = ["figure", "median", "min–max", "floor", "ratio", "target", ""]


def markdown(report: Report) -> str:
    lines = []
    group = None
    for row in report.rows:
        if row.group != group:
            group = row.group
            lines += ["", f"**{group}**", "", "| " + " | ".join(HEADER) + " |"]
            lines.append("|" + "---|" * len(HEADER))
        lines.append("| " + " | ".join(_cells(row)) + " |")
    return "\n".join(lines).strip()


def plain(report: Report) -> str:
    rows = [[row.group, *_cells(row)] for row in report.rows]
    header = ["group", *HEADER]
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    out = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True))]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(out)


def save(report: Report) -> Path:
    RESULTS.mkdir(exist_ok=True)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    path = RESULTS / f"{report.mode}-{stamp}.json"
    document = {**report.to_json(), "markdown": markdown(report)}
    path.write_text(json.dumps(document, indent=2, ensure_ascii=False))
    (RESULTS / f"latest-{report.mode}.json").write_text(path.read_text())
    return path


def summary(report: Report, seconds: float) -> str:
    missed = report.missed()
    checked = sum(1 for row in report.rows if row.ok is not None)
    if not missed:
        return f"bench {report.mode}: all {checked} targets met in {seconds:.0f} s"
    names = "; ".join(f"{row.group}: {row.name} ({row.target})" for row in missed)
    count = f"{len(missed)} of {checked} targets missed"
    return f"bench {report.mode}: {count} in {seconds:.0f} s: {names}"
