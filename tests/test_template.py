"""template.yaml and infra/: linted by the real tools, expanded by aws-sam-translator, and held
against the app's routes and the Dockerfile. All offline; the tools live in .venv-sam
(`make test` installs it; see mk/infra.mk)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"
DOCKERFILE = ROOT / "infra/Dockerfile"
SAM_BIN = ROOT / ".venv-sam/bin"
API_GATEWAY_LIMIT_MS = 30_000  # HTTP API's maximum integration timeout (REST: 29 s)
LAMBDA_LIMIT_S = 900
WRITE_ACTIONS = {"s3:PutObject", "s3:DeleteObject"}


def tool(name: str) -> str:
    """A tool from .venv-sam (or PATH); CI must have it, elsewhere its absence is a skip."""
    path = SAM_BIN / name if (SAM_BIN / name).exists() else shutil.which(name)
    if path is None:
        reason = f"{name} not installed: run `make test` (it installs .venv-sam via mk/infra.mk)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    return str(path)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SAM_CLI_TELEMETRY": "0", "AWS_DEFAULT_REGION": "us-east-1"}
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


@cache
def expanded() -> dict[str, Any]:
    done = run(tool("python"), "infra/expand_template.py", str(TEMPLATE))
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


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


def resources(kind: str) -> dict[str, dict[str, Any]]:
    return {name: r for name, r in expanded()["Resources"].items() if r["Type"] == kind}


def function(name: str) -> dict[str, Any]:
    return resources("AWS::Lambda::Function")[name]["Properties"]


# ---- the real linters ---------------------------------------------------------------------


def test_sam_validate_lint() -> None:
    done = run(
        tool("sam"), "validate", "--lint", "--region", "us-east-1", "--template", str(TEMPLATE)
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_cfn_lint() -> None:
    done = run(tool("cfn-lint"), str(TEMPLATE))
    assert done.returncode == 0, done.stdout + done.stderr


def test_hadolint() -> None:
    done = run(tool("hadolint"), str(DOCKERFILE))
    assert done.returncode == 0, done.stdout + done.stderr


# ---- routes: the template and the app agree -----------------------------------------------


def app_routes(monkeypatch: pytest.MonkeyPatch) -> set[tuple[str, str]]:
    """Every (method, path) the app answers, except FastAPI's own documentation pages.

    The docs stay out of the gateway on purpose (an open schema and a Swagger UI loaded from a
    CDN are not part of the product); everything else, the search page included, must be routed
    or it silently 404s on AWS while working under uvicorn.
    """
    from fastapi.routing import iter_route_contexts
    from starlette.routing import Mount

    from image_search.config import get_settings
    from image_search.serve.api import create_app

    monkeypatch.setenv("IMAGE_SEARCH_BUCKET", "example-images-bucket")
    monkeypatch.delenv("IMAGE_SEARCH_API_PREFIX", raising=False)
    get_settings.cache_clear()
    try:
        app = create_app()
    finally:
        get_settings.cache_clear()
    docs = {app.openapi_url, app.docs_url, app.redoc_url, app.swagger_ui_oauth2_redirect_url}
    found: set[tuple[str, str]] = set()
    # iter_route_contexts also walks the routers the app includes (app.routes does not).
    for route in iter_route_contexts(app.routes):
        if isinstance(route.original_route, Mount):  # static files: a greedy path in the gateway
            found.add(("GET", f"{route.path}/{{proxy+}}"))
        elif route.path not in docs:
            path = re.sub(r"\{(\w+):path\}", r"{\1+}", route.path)
            found |= {(method, path) for method in route.methods or () if method != "HEAD"}
    return found


def template_routes() -> set[tuple[str, str]]:
    (api,) = resources("AWS::ApiGatewayV2::Api").values()
    paths = api["Properties"]["Body"]["paths"]
    return {(method.upper(), path) for path, methods in paths.items() for method in methods}


def test_every_app_route_has_exactly_one_api_event_and_no_more(monkeypatch) -> None:
    app, gateway = app_routes(monkeypatch), template_routes()
    assert app - gateway == set(), "routes the app serves but template.yaml does not route"
    assert gateway - app == set(), "events in template.yaml for routes the app does not have"
    events = source()["Resources"]["SearchFunction"]["Properties"]["Events"].values()
    keys = [(e["Properties"]["Method"], e["Properties"]["Path"]) for e in events]
    assert len(keys) == len(set(keys)) == len(app)
    assert all(e["Type"] == "HttpApi" for e in events), "one API, explicit routes"


def test_every_route_goes_to_the_search_function_with_payload_v2() -> None:
    (api,) = resources("AWS::ApiGatewayV2::Api").values()
    for path, methods in api["Properties"]["Body"]["paths"].items():
        for method, spec in methods.items():
            integration = spec["x-amazon-apigateway-integration"]
            assert "${SearchFunction.Arn}" in integration["uri"]["Fn::Sub"], (method, path)
            assert integration["payloadFormatVersion"] == "2.0"
            assert integration["timeoutInMillis"] <= API_GATEWAY_LIMIT_MS


def test_uploads_reach_the_function_base64_encoded_as_in_the_replayed_event() -> None:
    """An uploaded image must reach the function byte for byte. The template's HTTP API sends
    payload format 2.0, which base64-encodes any body that is not text with nothing to configure
    (a REST API would need BinaryMediaTypes, and corrupts uploads without them); that is the
    format of tests/events/http-upload.json, which test_lambda_http.py replays and finds intact."""
    (api,) = resources("AWS::ApiGatewayV2::Api").values()
    upload = api["Properties"]["Body"]["paths"]["/image_search/search_by_image"]["post"]
    assert upload["x-amazon-apigateway-integration"]["payloadFormatVersion"] == "2.0"
    assert resources("AWS::ApiGateway::RestApi") == {}, "a REST API needs BinaryMediaTypes"
    event = json.loads((ROOT / "tests/events/http-upload.json").read_text())
    assert (event["version"], event["isBase64Encoded"]) == ("2.0", True)
    assert event["routeKey"] == "POST /image_search/search_by_image"
    assert event["headers"]["content-type"].startswith("multipart/form-data; boundary=")


# ---- functions, schedule, limits ----------------------------------------------------------


def test_timeouts_and_memory_within_lambda_and_gateway_limits() -> None:
    search, build = function("SearchFunction"), function("IndexBuildFunction")
    assert search["Timeout"] * 1000 < API_GATEWAY_LIMIT_MS and search["Timeout"] <= 29
    assert build["Timeout"] == LAMBDA_LIMIT_S
    params = source()["Parameters"]
    for name in ("SearchMemorySize", "BuildMemorySize"):
        assert 128 <= params[name]["Default"] <= params[name]["MaxValue"] <= 10240
    assert params["ApiKeys"]["NoEcho"] is True
    assert search["PackageType"] == build["PackageType"] == "Image"
    assert search["ImageConfig"]["Command"] == ["handler.handler"]
    assert build["ImageConfig"]["Command"] == ["handler.build"]


def test_build_runs_on_the_schedule_parameter_without_blind_retries() -> None:
    (rule,) = resources("AWS::Events::Rule").values()
    props = rule["Properties"]
    assert props["ScheduleExpression"] == {"Ref": "BuildSchedule"} and props["State"] == "ENABLED"
    assert props["Targets"][0]["Arn"] == {"Fn::GetAtt": ["IndexBuildFunction", "Arn"]}
    assert re.fullmatch(r"(rate|cron)\(.+\)", source()["Parameters"]["BuildSchedule"]["Default"])
    (invoke_config,) = resources("AWS::Lambda::EventInvokeConfig").values()
    assert invoke_config["Properties"]["MaximumRetryAttempts"] == 0


def test_handlers_named_in_the_template_exist_and_only_the_api_warms(tmp_path: Path) -> None:
    """Import handler.py as each function would (Lambda sets _HANDLER) against an unreachable S3:
    both entry points exist; only the search function tries to load the index at import."""
    for function_name in ("SearchFunction", "IndexBuildFunction"):
        (command,) = function(function_name)["ImageConfig"]["Command"]
        module, _, name = command.rpartition(".")
        code = (
            "import logging, sys; logging.basicConfig(level=logging.WARNING)\n"
            f"import {module}\n"
            f"assert callable({module}.{name})\n"
        )
        env = {
            **os.environ,
            "_HANDLER": command,
            "IMAGE_SEARCH_BUCKET": "no-such-bucket",
            "IMAGE_SEARCH_MODEL": str(tmp_path / "no-model"),
            "AWS_ENDPOINT_URL_S3": "http://127.0.0.1:9",
            "AWS_ACCESS_KEY_ID": "x",
            "AWS_SECRET_ACCESS_KEY": "x",
            "AWS_DEFAULT_REGION": "us-east-1",
        }
        done = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
        warmed = "warm-up incomplete" in done.stderr
        assert warmed == (function_name == "SearchFunction"), done.stderr


# ---- least privilege ----------------------------------------------------------------------


def statements(role: str) -> list[dict[str, Any]]:
    props = resources("AWS::IAM::Role")[role]["Properties"]
    return [s for p in props.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def resource_text(resource: Any) -> str:
    return (
        resource["Fn::Sub"]
        if isinstance(resource, dict) and "Fn::Sub" in resource
        else str(resource)
    )


@pytest.mark.parametrize("role", ["SearchFunctionRole", "IndexBuildFunctionRole"])
def test_no_wildcard_s3_actions_or_resources(role: str) -> None:
    for statement in statements(role):
        actions = as_list(statement["Action"])
        assert statement["Effect"] == "Allow" and "NotAction" not in statement
        for action in actions:
            assert "*" not in action, f"{role}: wildcard action {action}"
        if any(a.startswith("s3:") for a in actions):
            for resource in map(resource_text, as_list(statement["Resource"])):
                assert resource.startswith("arn:${AWS::Partition}:s3:::${BucketName}"), resource
                assert resource != "*" and not resource.startswith("arn:aws:s3:::*")


def test_search_reads_only_and_build_writes_only_under_the_index_prefix() -> None:
    search_actions = {a for s in statements("SearchFunctionRole") for a in as_list(s["Action"])}
    assert search_actions == {"s3:ListBucket", "s3:GetObject"}
    for statement in statements("IndexBuildFunctionRole"):
        actions = set(as_list(statement["Action"]))
        if actions & WRITE_ACTIONS:
            assert actions <= WRITE_ACTIONS
            resources_ = [resource_text(r) for r in as_list(statement["Resource"])]
            assert resources_ == ["arn:${AWS::Partition}:s3:::${BucketName}/${IndexPrefix}*"]
    prefix = source()["Parameters"]["IndexPrefix"]
    assert re.fullmatch(prefix["AllowedPattern"], prefix["Default"])
    for bad in ("", "index", "/index/", "*/", "index/*/"):  # so "${IndexPrefix}*" stays narrow
        assert not re.fullmatch(prefix["AllowedPattern"], bad), bad


def test_build_may_invoke_only_itself() -> None:
    (invoke,) = [
        s for s in statements("IndexBuildFunctionRole") if s["Action"] == "lambda:InvokeFunction"
    ]
    name = function("IndexBuildFunction")["FunctionName"]["Fn::Sub"]
    assert resource_text(invoke["Resource"]).endswith(f":function:{name}")


# ---- environment and the image ------------------------------------------------------------


def test_environment_names_are_settings() -> None:
    from image_search.config import Settings

    known = {f"IMAGE_SEARCH_{name.upper()}" for name in Settings.model_fields}
    for name in ("SearchFunction", "IndexBuildFunction"):
        variables = function(name)["Environment"]["Variables"]
        assert set(variables) <= known, set(variables) - known
        assert "IMAGE_SEARCH_API_PREFIX" not in variables  # the routes above assume no prefix


def test_upload_limit_fits_lambdas_payload_after_base64() -> None:
    limit = int(
        function("SearchFunction")["Environment"]["Variables"]["IMAGE_SEARCH_MAX_UPLOAD_BYTES"]
    )
    framing = 64 * 1024  # multipart boundaries, the other form fields, headers
    assert (limit + 2) // 3 * 4 + framing <= 6 * 1024 * 1024  # Lambda's synchronous payload limit


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [
        line.strip()
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def stages() -> list[list[tuple[str, str]]]:
    """The Dockerfile's instructions split at each FROM (the global ARGs before the first)."""
    split: list[list[tuple[str, str]]] = [[]]
    for op, arg in dockerfile_instructions():
        if op == "FROM":
            split.append([])
        split[-1].append((op, arg))
    return split


def test_dockerfile_invariants() -> None:
    preamble, export_stage, image = stages()
    assert [arg for _, arg in export_stage[:1] + image[:1]] == [
        "public.ecr.aws/lambda/python:3.12 AS export",
        "public.ecr.aws/lambda/python:3.12",
    ]
    args = dict(arg.split("=", 1) for op, arg in preamble if op == "ARG")
    env = " ".join(arg for op, arg in image if op == "ENV")
    raw_model_path = re.search(r"IMAGE_SEARCH_MODEL=(\S+)", env).group(1)
    model_path = raw_model_path.replace("${MODEL_ID}", args["MODEL_ID"])
    assert "IMAGE_SEARCH_RUNTIME=onnx" in env

    # The model the image exports is the one the template points the functions at.
    params = source()["Parameters"]
    for name in ("SearchFunction", "IndexBuildFunction"):
        resource = source()["Resources"][name]
        assert resource["Metadata"]["Dockerfile"] == "infra/Dockerfile"
        assert resource["Metadata"]["DockerBuildArgs"]["MODEL_ID"] == args["MODEL_ID"]
        variables = function(name)["Environment"]["Variables"]
        template_path = variables["IMAGE_SEARCH_MODEL"]["Fn::Sub"].replace(
            "${ModelId}", params["ModelId"]["Default"]
        )
        assert template_path == model_path

    # torch only in the export stage, only from the CPU index; the image gets the export and the
    # torch-free requirements; no build caches left behind.
    export_runs = [arg for op, arg in export_stage if op == "RUN"]
    assert any(
        "--index-url https://download.pytorch.org/whl/cpu" in r and "torch==" in r
        for r in export_runs
    )
    # Exported from where the torch image kept the model: that path stays the index's identity.
    assert any(f'save "${{MODEL_ID}}" "{raw_model_path}"' in r for r in export_runs)
    assert any(
        f'export --model "{raw_model_path}" --output /opt/export/model' in r for r in export_runs
    )
    runs = [arg for op, arg in image if op == "RUN"]
    assert not any("torch" in r or "requirements.txt" in r for r in runs)
    assert any("pip install -r /tmp/requirements-lambda.txt" in r for r in runs)
    assert ("COPY", f"--from=export /opt/export/model/ {raw_model_path}/") in image
    image_env = " ".join(arg for op, arg in export_stage + image if op == "ENV")
    assert "PIP_NO_CACHE_DIR=1" in image_env and any(
        "rm -rf /tmp/hf-download" in r for r in export_runs
    )
    lines = (ROOT / "requirements-lambda.txt").read_text().splitlines()
    packages = {re.split(r"[=<>\[ ]", line)[0] for line in lines if line and line[0] != "#"}
    assert {"onnxruntime", "tokenizers"} <= packages
    assert not packages & {"torch", "transformers", "torchvision"}

    # CMD names the search handler, and everything the image COPYs exists and is not excluded.
    (cmd,) = [arg for op, arg in image if op == "CMD"]
    assert json.loads(cmd) == ["handler.handler"]
    copied = [
        path
        for op, arg in export_stage + image
        if op == "COPY" and not arg.startswith("--from")
        for path in arg.split()[:-1]
    ]
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    for path in copied:
        assert (ROOT / path).exists(), path
        assert f"!{path}" in ignore, f"{path} is kept out of the build context by .dockerignore"
    assert "tests/" not in copied and not any(p.startswith(".venv") for p in copied)


def test_baked_model_exports_and_loads_like_in_the_image(
    tiny_model, tmp_path, monkeypatch, capsys
) -> None:
    """infra/bake_model.py save, the export, then check (tiny model instead of a hub download)."""
    import importlib.util

    from image_search.cli import main

    spec = importlib.util.spec_from_file_location("bake_model", ROOT / "infra/bake_model.py")
    bake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bake)
    saved = tmp_path / "opt/models/tiny/clip"
    bake.save(str(tiny_model), saved)
    assert (saved / "model.safetensors").is_file() and (saved / "config.json").is_file()
    exported = tmp_path / "opt/export/model"
    assert main(["export", "--model", str(saved), "--output", str(exported)]) == 0
    monkeypatch.setenv("IMAGE_SEARCH_RUNTIME", "onnx")
    bake.check(exported)
    assert f"(OnnxEmbedder): identity {saved}, dim 16" in capsys.readouterr().out


def test_env_json_only_sets_variables_the_template_declares() -> None:
    """sam local ignores --env-vars entries a function does not declare: a typo goes unnoticed."""
    env = json.loads((ROOT / "infra/env.json").read_text())
    for name, variables in env.items():
        declared = set(function(name)["Environment"]["Variables"])
        assert set(variables) <= declared, set(variables) - declared
