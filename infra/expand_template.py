"""Print template.yaml as CloudFormation JSON, expanded offline by aws-sam-translator.

Runs in the infra tools venv (``.venv-sam/bin/python infra/expand_template.py template.yaml``):
tests/infra/test_template.py reads the output. Image functions get a placeholder ImageUri, which
``sam build`` would otherwise fill in.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from samtranslator.model.exceptions import InvalidDocumentException
from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

PLACEHOLDER_IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/image-search:placeholder"
PARAMETERS = {"BucketName": "example-images-bucket"}


class NoManagedPolicies:
    """The template names no managed policies, so nothing needs looking up in IAM."""

    def load(self) -> dict[str, str]:
        return {}


def expand(template: dict[str, Any]) -> dict[str, Any]:
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function" and props.get("PackageType") == "Image":
            props.setdefault("ImageUri", PLACEHOLDER_IMAGE)
    return transform(template, PARAMETERS, NoManagedPolicies())  # type: ignore[arg-type]


if __name__ == "__main__":
    # The translator fills in pseudo parameters (AWS::Region) from the boto3 session.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    source = yaml_parse(Path(sys.argv[1]).read_text())
    try:
        expanded = expand(source)
    except InvalidDocumentException as exc:
        raise SystemExit("; ".join(cause.message for cause in exc.causes)) from exc
    json.dump(expanded, sys.stdout, indent=1, default=str)
