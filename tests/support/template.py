"""template.yaml as data, CloudFormation's short-form tags kept as plain values."""

from __future__ import annotations

from typing import Any

import yaml

from tests.support.paths import ROOT

TEMPLATE = ROOT / "template.yaml"


class CfnLoader(yaml.SafeLoader):
    """YAML with CloudFormation's short-form tags (!Ref, !Sub, ...) kept as plain values."""


CfnLoader.add_multi_constructor(
    "!",
    lambda loader, tag, node: (
        loader.construct_scalar(node) if isinstance(node, yaml.ScalarNode) else None
    ),
)


def source() -> dict[str, Any]:
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass
