"""Where the repository and the recorded events are, wherever a test module sits."""

import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "tests" / "events"


def load_event(name: str) -> dict[str, Any]:
    """A recorded event payload from tests/events/."""
    loaded: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return loaded
