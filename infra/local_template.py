"""template.yaml as `make sam-local` builds and runs it: the same stack, two local differences.

    python infra/local_template.py template template.yaml OUT [--build-arg NAME=VALUE ...]
    python infra/local_template.py env-vars OUT --bucket B [--s3-endpoint URL] [--api-keys K]

1. The emulator's binary media types. On AWS the HTTP API base64-encodes every request body that
   is not text by itself (payload format 2.0), so an upload reaches the function intact with
   nothing to configure. SAM CLI's emulation of an HTTP API instead decodes every body as UTF-8
   unless the API lists the body's media type as binary, and answers 502 to a JPEG upload
   (aws-sam-cli issues #3110 and #7927). An HTTP API has no BinaryMediaTypes property, but the
   emulator also reads the list from an OpenAPI body's x-amazon-apigateway-binary-media-types,
   so the local copy gets a minimal body carrying it: the routes still come from the events.
   The deployed template keeps no such body (that extension belongs to REST APIs).
2. Build arguments (pip's index and trusted host) added to every image function's
   DockerBuildArgs, which `sam build` passes to `docker build` and takes from nowhere else.

Runs in the infra tools venv (.venv-sam), which has PyYAML and SAM's own YAML loader.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from samtranslator.yaml_helper import yaml_parse

# What the HTTP API would send base64-encoded among the bodies the app takes (uploads are
# multipart); text and JSON stay text, as on AWS. The emulator matches types exactly (only
# "*/*" is a wildcard to it), so they are named one by one.
BINARY_MEDIA_TYPES = ["multipart/form-data", "application/octet-stream"]


def local_template(template: dict[str, Any], build_args: dict[str, str]) -> dict[str, Any]:
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::HttpApi":
            if "DefinitionBody" in props or "DefinitionUri" in props:
                raise SystemExit("an HTTP API with its own OpenAPI body: merge the list by hand")
            props["DefinitionBody"] = {
                "openapi": "3.0.1",
                "info": {"title": "local", "version": "1.0"},
                "paths": {},
                "x-amazon-apigateway-binary-media-types": BINARY_MEDIA_TYPES,
            }
        if resource["Type"] == "AWS::Serverless::Function" and props.get("PackageType") == "Image":
            resource["Metadata"].setdefault("DockerBuildArgs", {}).update(build_args)
    return template


def env_vars(*, bucket: str, s3_endpoint: str, api_keys: str) -> dict[str, dict[str, str]]:
    """`sam local --env-vars` for the search function: only variables the template declares
    count (SAM ignores the others), which is why AWS_ENDPOINT_URL_S3 is declared there."""
    return {
        "SearchFunction": {
            "IMAGE_SEARCH_BUCKET": bucket,
            "AWS_ENDPOINT_URL_S3": s3_endpoint,
            "IMAGE_SEARCH_API_KEYS": api_keys,
        }
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    verbs = parser.add_subparsers(dest="verb", required=True)
    template = verbs.add_parser("template", help="the local copy of template.yaml")
    template.add_argument("template", type=Path)
    template.add_argument("output", type=Path)
    template.add_argument("--build-arg", action="append", default=[], metavar="NAME=VALUE")
    env = verbs.add_parser("env-vars", help="the --env-vars file for sam local")
    env.add_argument("output", type=Path)
    env.add_argument("--bucket", required=True)
    env.add_argument("--s3-endpoint", default="", help="empty: AWS's own S3")
    env.add_argument("--api-keys", default="", help="empty: the API is open")
    args = parser.parse_args(argv)
    if args.verb == "template":
        build_args = dict(arg.split("=", 1) for arg in args.build_arg)
        local = local_template(yaml_parse(args.template.read_text()), build_args)
        # JSON is YAML: SAM reads it, and the intrinsic functions stay in their long form.
        args.output.write_text(json.dumps(local, indent=1) + "\n")
    else:
        variables = env_vars(
            bucket=args.bucket, s3_endpoint=args.s3_endpoint, api_keys=args.api_keys
        )
        args.output.write_text(json.dumps(variables, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
