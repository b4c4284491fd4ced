"""The README's test command on a machine without Chromium: the browser tests are skipped with one
line saying how to run them, unless CI is set, where a missing Chromium is a failure."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.paths import ROOT


def run_browser_tests(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in {"CI", "IMAGE_SEARCH_CHROMIUM"}}
    clean["IMAGE_SEARCH_CHROMIUM"] = str(tmp_path / "no-chromium-here")
    command = [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider"]
    return subprocess.run(
        # Another quick module beside them, as in the whole suite (alone, all skipped is exit 5).
        [*command, "tests/browser/test_browser.py", "tests/serve/test_folders.py"],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_without_chromium_the_browser_tests_are_skipped_with_one_line(tmp_path: Path) -> None:
    done = run_browser_tests(tmp_path)
    assert done.returncode == 0, done.stdout[-3000:]
    skipped = [line for line in done.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == 1, done.stdout[-3000:]
    assert "no Chromium at" in skipped[0] and "apt-get install chromium" in skipped[0]
    assert "error" not in done.stdout.splitlines()[-1]


def test_under_ci_a_missing_chromium_fails(tmp_path: Path) -> None:
    done = run_browser_tests(tmp_path, CI="true")
    assert done.returncode != 0, done.stdout[-3000:]
    assert "no Chromium at" in done.stdout
