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

from tests.support.paths import ROOT
from tests.support.template import TEMPLATE, source

DOCKERFILE = ROOT / "infra/Dockerfile"
SAM_BIN = ROOT / ".venv-sam/bin"
API_GATEWAY_LIMIT_MS = 30_000  # HTTP API's maximum integration timeout (REST: 29 s)
LAMBDA_LIMIT_S = 900
WRITE_ACTIONS = {"s3:PutObject", "s3:DeleteObject"}
BUILD_FUNCTIONS = ("BuildPlanFunction", "EmbedShardFunction", "BuildMergeFunction")
FUNCTIONS = ("SearchFunction", *BUILD_FUNCTIONS, "IngestFunction")
# Functions that load their model during init (a cold start's first request or batch pays less).
WARMED = {"SearchFunction", "IngestFunction"}


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
    search = function("SearchFunction")
    assert search["Timeout"] * 1000 < API_GATEWAY_LIMIT_MS and search["Timeout"] <= 29
    assert all(function(name)["Timeout"] == LAMBDA_LIMIT_S for name in BUILD_FUNCTIONS)
    params = source()["Parameters"]
    for name in ("BuildMemorySize", "ShardMemorySize"):
        assert 128 <= params[name]["Default"] <= params[name]["MaxValue"] <= 10240
    assert params["ApiKeys"]["NoEcho"] is True
    assert all(function(name)["PackageType"] == "Image" for name in FUNCTIONS)
    commands = {name: function(name)["ImageConfig"]["Command"] for name in FUNCTIONS}
    assert commands == {
        "SearchFunction": ["handler.search"],
        "BuildPlanFunction": ["handler.plan"],
        "EmbedShardFunction": ["handler.embed_shard"],
        "BuildMergeFunction": ["handler.merge"],
        "IngestFunction": ["handler.ingest"],
    }


def test_search_memory_and_tmp_follow_the_images_it_serves_as_documented() -> None:
    params, sizes = source()["Parameters"], source()["Mappings"]["SearchSize"]
    assert params["SearchImages"]["AllowedValues"] == list(sizes) == ["100k", "1M", "10M"]
    assert params["SearchImages"]["Default"] in sizes
    for size in sizes.values():  # Lambda's ranges
        assert 128 <= size["Memory"] <= 10240 and 512 <= size["Tmp"] <= 10240
    memory, tmp = ([size[field] for size in sizes.values()] for field in ("Memory", "Tmp"))
    assert memory == sorted(memory) and tmp == sorted(tmp)
    # docs/scale.md's table states what the template sets: "| 1M | … | 3,008 MB | 2,048 MB |…"
    rows = {
        line.split("|")[1].strip(): line
        for line in (ROOT / "docs/scale.md").read_text().splitlines()
        if line.startswith("| ")
    }
    for name, size in sizes.items():
        assert f"{size['Memory']:,} MB" in rows[name] and f"{size['Tmp']:,} MB" in rows[name]


FUNCTION_ARNS = {
    "PlanFunctionArn": "BuildPlanFunction.Arn",
    "EmbedShardFunctionArn": "EmbedShardFunction.Arn",
    "MergeFunctionArn": "BuildMergeFunction.Arn",
}


def state_machine() -> dict[str, Any]:
    (machine,) = resources("AWS::StepFunctions::StateMachine").values()
    return machine["Properties"]


def definition() -> dict[str, Any]:
    """The definition as written in template.yaml (substitutions still ``${...}``)."""
    return source()["Resources"]["IndexBuildStateMachine"]["Properties"]["Definition"]


def test_the_schedule_starts_the_build_state_machine() -> None:
    (rule,) = [
        r
        for r in resources("AWS::Events::Rule").values()
        if "ScheduleExpression" in r["Properties"]
    ]
    props = rule["Properties"]
    assert props["ScheduleExpression"] == {"Ref": "BuildSchedule"} and props["State"] == "ENABLED"
    assert props["Targets"][0]["Arn"] == {"Ref": "IndexBuildStateMachine"}
    assert re.fullmatch(r"(rate|cron)\(.+\)", source()["Parameters"]["BuildSchedule"]["Default"])
    assert state_machine()["StateMachineType"] == "STANDARD"  # Distributed Map needs STANDARD


def test_plan_then_a_distributed_map_over_the_plans_shards_then_merge() -> None:
    machine = definition()
    states = machine["States"]
    assert machine["StartAt"] == "Plan"
    substitutions = source()["Resources"]["IndexBuildStateMachine"]["Properties"][
        "DefinitionSubstitutions"
    ]
    for name, arn in {"Plan": "PlanFunctionArn", "Merge": "MergeFunctionArn"}.items():
        assert states[name]["Parameters"]["FunctionName"] == f"${{{arn}}}"
    assert {name: substitutions[name] for name in FUNCTION_ARNS} == FUNCTION_ARNS
    shard_map = states["EmbedShards"]
    assert shard_map["Type"] == "Map" and states["Plan"]["Next"] == "AnythingToDo"
    assert states["AnythingToDo"]["Choices"][0]["Next"] == "EmbedShards"
    assert shard_map["Next"] == "Merge" and states["Merge"]["End"] is True
    processor = shard_map["ItemProcessor"]
    assert processor["ProcessorConfig"] == {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"}
    (child,) = processor["States"].values()
    assert child["Parameters"]["FunctionName"] == "${EmbedShardFunctionArn}"

    # The items: the plan's shard list, a JSON array in S3, read by the ItemReader.
    reader = shard_map["ItemReader"]
    assert reader["Resource"] == "arn:aws:states:::s3:getObject"
    assert reader["ReaderConfig"]["InputType"] == "JSON"
    assert reader["Parameters"]["Key.$"] == "$.plan.items_key"
    assert shard_map["ItemSelector"]["shard_id.$"] == "$$.Map.Item.Value.shard_id"

    # Bounded: a concurrency limit and a failure tolerance, both from stack parameters.
    assert shard_map["MaxConcurrencyPath"] == "$.max_concurrency"
    assert shard_map["ToleratedFailurePercentagePath"] == "$.tolerated_failure_percentage"
    selector = states["Plan"]["ResultSelector"]
    assert selector["max_concurrency.$"] == "States.StringToJson('${ShardConcurrency}')"
    assert selector["tolerated_failure_percentage.$"] == (
        "States.StringToJson('${ShardFailureTolerance}')"
    )
    params = source()["Parameters"]
    assert 1 <= params["ShardConcurrency"]["Default"] <= params["ShardConcurrency"]["MaxValue"]
    assert 0 <= params["ShardFailureTolerance"]["Default"] < 50

    # The children's results go to S3 under the work prefix (the merge deletes them), never into
    # the state's output (256 KiB), and the plan survives for the merge.
    writer = shard_map["ResultWriter"]
    assert writer["Resource"] == "arn:aws:states:::s3:putObject"
    assert writer["Parameters"]["Prefix"] == "${MapResultsPrefix}"
    assert substitutions["MapResultsPrefix"] == "${IndexPrefix}work/build/map-results"
    assert shard_map["ResultPath"] == "$.map"

    # A failed plan, failed shards (past the tolerance) or a failed merge: the lease is given
    # back by its owner, the execution (whose id the plan took it under), then fail. Abandon
    # reads nothing from the state's data: after a failed Plan there is no plan.
    for name in ("Plan", "EmbedShards", "Merge"):
        (catch,) = states[name]["Catch"]
        assert catch["ErrorEquals"] == ["States.ALL"] and catch["Next"] == "Abandon"
    assert states["Plan"]["Parameters"]["Payload"]["execution.$"] == "$$.Execution.Id"
    assert states["Merge"]["Parameters"]["Payload"]["execution.$"] == "$$.Execution.Id"
    abandon = states["Abandon"]
    assert abandon["Parameters"]["FunctionName"] == "${MergeFunctionArn}"
    assert abandon["Parameters"]["Payload"] == {"execution.$": "$$.Execution.Id", "abandon": True}
    assert states[abandon["Next"]]["Type"] == "Fail"


@pytest.mark.parametrize("state", ["Plan", "EmbedShard", "Merge", "Abandon"])
def test_every_lambda_state_retries_throttling_and_lambda_faults(state: str) -> None:
    states = definition()["States"]
    task = (
        states[state]
        if state in states
        else states["EmbedShards"]["ItemProcessor"]["States"][state]
    )
    retried = {error for rule in task["Retry"] for error in rule["ErrorEquals"]}
    assert {
        "Lambda.TooManyRequestsException",
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
    } <= retried
    assert "States.ALL" not in retried  # a bad image bucket or a bug would fail the same way again
    for rule in task["Retry"]:
        assert rule["MaxAttempts"] <= 6 and rule.get("BackoffRate", 1) >= 1


def test_handlers_named_in_the_template_exist_and_only_the_api_warms(tmp_path: Path) -> None:
    """Import handler.py and look the entry point up as each function's init does, against an
    unreachable S3: every entry point exists; only the search function builds the app and tries
    to load the index at init, and it and ingest try to load their model."""
    for function_name in FUNCTIONS:
        (command,) = function(function_name)["ImageConfig"]["Command"]
        module, _, name = command.rpartition(".")
        code = (
            "import logging, sys; logging.basicConfig(level=logging.WARNING)\n"
            f"import {module}\n"
            f"assert callable({module}.{name})\n"
            "print('app built' if 'image_search.serve.api' in sys.modules else 'no app')\n"
        )
        env = {
            **os.environ,
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
        assert warmed == (function_name in WARMED), done.stderr
        built = done.stdout.strip().splitlines()[-1] == "app built"
        assert built == (function_name == "SearchFunction"), done.stdout


# ---- ingest: S3 events → SQS → the ingest function ------------------------------------------


def test_ingest_reads_its_queue_in_batches_and_answers_partial_failures() -> None:
    (mapping,) = resources("AWS::Lambda::EventSourceMapping").values()
    props = mapping["Properties"]
    assert props["FunctionName"] == {"Ref": "IngestFunction"}
    assert props["EventSourceArn"] == {"Fn::GetAtt": ["IngestQueue", "Arn"]}
    assert props["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert props["BatchSize"] == {"Ref": "IngestBatchSize"}
    assert props["MaximumBatchingWindowInSeconds"] == {"Ref": "IngestBatchWindowSeconds"}
    assert props["ScalingConfig"]["MaximumConcurrency"] == {"Ref": "IngestConcurrency"}
    params = source()["Parameters"]
    assert params["IngestConcurrency"]["MinValue"] == 2  # SQS's least maximum concurrency
    assert params["IngestBatchSize"]["MaxValue"] == 10000  # SQS's limit with a window
    assert params["IngestBatchWindowSeconds"]["MaxValue"] == 300
    # A batch above 10 messages needs a window (SQS refuses the mapping otherwise).
    assert (
        params["IngestBatchSize"]["Default"] <= 10
        or params["IngestBatchWindowSeconds"]["Default"] >= 1
    )

    queues = resources("AWS::SQS::Queue")
    queue = queues["IngestQueue"]["Properties"]
    # Lambda's advice: visibility at least six times the function's timeout.
    assert queue["VisibilityTimeout"] >= 6 * function("IngestFunction")["Timeout"]
    redrive = queue["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]}
    assert 1 < redrive["maxReceiveCount"] <= 10
    assert all(q["Properties"]["SqsManagedSseEnabled"] for q in queues.values())
    # SQS permissions for its own queue only (no managed policy reading every queue).
    role = resources("AWS::IAM::Role")["IngestFunctionRole"]["Properties"]
    assert role["ManagedPolicyArns"] == [
        "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"
    ]
    sqs = [
        s for s in statements("IngestFunctionRole") if as_list(s["Action"])[0].startswith("sqs:")
    ]
    assert [s["Resource"] for s in sqs] == [{"Fn::GetAtt": ["IngestQueue", "Arn"]}]


def test_eventbridge_sends_the_buckets_changes_outside_the_index_prefix() -> None:
    (rule,) = [r for r in source()["Resources"].values() if r["Type"] == "AWS::Events::Rule"]
    assert rule["Condition"] == "UseEventBridge"
    pattern = rule["Properties"]["EventPattern"]
    assert pattern["source"] == ["aws.s3"]
    assert pattern["detail-type"] == ["Object Created", "Object Deleted"]
    assert pattern["detail"]["bucket"]["name"] == ["BucketName"]  # !Ref, as the loader keeps it
    assert pattern["detail"]["object"]["key"] == [{"anything-but": {"prefix": "IndexPrefix"}}]
    assert rule["Properties"]["Targets"][0]["Arn"] == "IngestQueue.Arn"  # !GetAtt, kept as text
    # Only the rule may send (EventBridge), or only the bucket, from this account.
    policy = expanded()["Resources"]["IngestQueuePolicy"]["Properties"]["PolicyDocument"]
    ((condition, from_rule, from_bucket),) = [s["Fn::If"] for s in policy["Statement"]]
    assert condition == "UseEventBridge"
    assert from_rule["Principal"] == {"Service": "events.amazonaws.com"}
    assert from_rule["Condition"]["ArnEquals"]["aws:SourceArn"] == {
        "Fn::GetAtt": ["IngestEventsRule", "Arn"]
    }
    assert from_bucket["Principal"] == {"Service": "s3.amazonaws.com"}
    assert resource_text(from_bucket["Condition"]["ArnEquals"]["aws:SourceArn"]) == BUCKET_ARN
    assert from_bucket["Condition"]["StringEquals"]["aws:SourceAccount"] == {
        "Ref": "AWS::AccountId"
    }
    assert from_rule["Action"] == from_bucket["Action"] == "sqs:SendMessage"


def test_alarms_watch_the_dead_letter_queue_and_the_events_age() -> None:
    alarms = {
        r["Properties"]["MetricName"]: r["Properties"]
        for r in resources("AWS::CloudWatch::Alarm").values()
    }
    dead = alarms["ApproximateNumberOfMessagesVisible"]
    assert dead["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["IngestDeadLetterQueue", "QueueName"]}
    assert (dead["Threshold"], dead["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    age = alarms["ApproximateAgeOfOldestMessage"]
    assert age["Dimensions"][0]["Value"] == {"Fn::GetAtt": ["IngestQueue", "QueueName"]}
    assert age["Threshold"] == {"Ref": "IngestAlarmAgeSeconds"}


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


ROLES = [f"{name}Role" for name in FUNCTIONS] + ["IndexBuildStateMachineRole"]
BUCKET_ARN = "arn:${AWS::Partition}:s3:::${BucketName}"


@pytest.mark.parametrize("role", ROLES)
def test_no_wildcard_s3_actions_or_resources(role: str) -> None:
    for statement in statements(role):
        actions = as_list(statement["Action"])
        assert statement["Effect"] == "Allow" and "NotAction" not in statement
        for action in actions:
            assert "*" not in action, f"{role}: wildcard action {action}"
        if any(a.startswith("s3:") for a in actions):
            for resource in map(resource_text, as_list(statement["Resource"])):
                assert resource.startswith(BUCKET_ARN), resource
                assert resource != "*" and not resource.startswith("arn:aws:s3:::*")


def writes(role: str) -> dict[str, set[str]]:
    """S3 write action → the resources the role may write, deleting included."""
    found: dict[str, set[str]] = {}
    for statement in statements(role):
        for action in set(as_list(statement["Action"])) & WRITE_ACTIONS:
            found.setdefault(action, set()).update(
                map(resource_text, as_list(statement["Resource"]))
            )
    return found


def test_each_function_writes_only_where_its_stage_writes() -> None:
    search_actions = {a for s in statements("SearchFunctionRole") for a in as_list(s["Action"])}
    assert search_actions == {"s3:ListBucket", "s3:GetObject"}
    work = f"{BUCKET_ARN}/${{IndexPrefix}}work/build/"
    build_lease = f"{BUCKET_ARN}/${{IndexPrefix}}work/build-lease.json"
    assert writes("BuildPlanFunctionRole") == {
        "s3:PutObject": {f"{work}*", build_lease},
        "s3:DeleteObject": {build_lease},
    }
    # A shard cannot touch the published index, the pointer or another stage's files.
    assert writes("EmbedShardFunctionRole") == {"s3:PutObject": {f"{work}shards/*"}}
    index = {f"{BUCKET_ARN}/${{IndexPrefix}}*"}
    assert writes("BuildMergeFunctionRole") == {"s3:PutObject": index, "s3:DeleteObject": index}
    assert writes("IndexBuildStateMachineRole") == {"s3:PutObject": {f"{work}map-results/*"}}
    # Ingest: its segments and the pointer (If-Match in the code); never the builds, the work
    # files or the build lease, and no pointer deletes.
    segments = f"{BUCKET_ARN}/${{IndexPrefix}}segments/*"
    assert writes("IngestFunctionRole") == {
        "s3:PutObject": {segments, f"{BUCKET_ARN}/${{IndexPrefix}}current.json"},
        "s3:DeleteObject": {segments},
    }
    prefix = source()["Parameters"]["IndexPrefix"]
    assert re.fullmatch(prefix["AllowedPattern"], prefix["Default"])
    for bad in ("", "index", "/index/", "*/", "index/*/"):  # so "${IndexPrefix}*" stays narrow
        assert not re.fullmatch(prefix["AllowedPattern"], bad), bad


def test_the_state_machine_invokes_only_the_build_functions_and_runs_only_itself() -> None:
    role = statements("IndexBuildStateMachineRole")
    (invoke,) = [s for s in role if s["Action"] == "lambda:InvokeFunction"]
    assert {r["Fn::GetAtt"][0] for r in invoke["Resource"]} == set(BUILD_FUNCTIONS)
    (start,) = [s for s in role if s["Action"] == "states:StartExecution"]
    name = source()["Resources"]["IndexBuildStateMachine"]["Properties"]["Name"]
    assert resource_text(start["Resource"]).endswith(f":stateMachine:{name}")
    assert not any("iam:" in a for s in role for a in as_list(s["Action"]))


# ---- environment and the image ------------------------------------------------------------


def test_environment_names_are_settings_or_the_s3_endpoint_left_empty() -> None:
    """Every variable is a setting, except boto3's own AWS_ENDPOINT_URL_S3 (STYLE: the endpoint
    is boto3's variable, not a home-made one). It is declared, empty, only because `sam local
    --env-vars` overrides nothing a function does not declare, and local runs need moto's or
    MinIO's endpoint there; empty, boto3 uses AWS's S3 (test below)."""
    from image_search.config import Settings

    known = {f"IMAGE_SEARCH_{name.upper()}" for name in Settings.model_fields}
    for name in FUNCTIONS:
        variables = dict(function(name)["Environment"]["Variables"])
        assert variables.pop("AWS_ENDPOINT_URL_S3") == ""
        assert set(variables) <= known, set(variables) - known
        assert "IMAGE_SEARCH_API_PREFIX" not in variables  # the routes above assume no prefix


def test_an_empty_s3_endpoint_leaves_boto3_on_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    from image_search.storage import s3

    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", "")
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    assert s3.make_client().meta.endpoint_url == "https://s3.amazonaws.com"


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
    for name in FUNCTIONS:
        resource = source()["Resources"][name]
        assert resource["Metadata"]["Dockerfile"] == "infra/Dockerfile"
        assert resource["Metadata"]["DockerBuildArgs"]["MODEL_ID"] == args["MODEL_ID"]
        variables = function(name)["Environment"]["Variables"]
        template_path = variables["IMAGE_SEARCH_MODEL"]["Fn::Sub"].replace(
            "${ModelId}", params["ModelId"]["Default"]
        )
        assert template_path == model_path

    # torch only in the export stage, only from the CPU index (by default: `make image` points
    # the index arguments at a wheelhouse where no registry is reachable); the image gets the
    # export and the torch-free requirements; no build caches left behind.
    assert args["TORCH_INDEX_URL"] == "https://download.pytorch.org/whl/cpu"
    assert args["PIP_INDEX_URL"] == "https://pypi.org/simple"
    export_runs = [arg for op, arg in export_stage if op == "RUN"]
    assert any("^torch==" in r and '--index-url "${TORCH_INDEX_URL}"' in r for r in export_runs)
    # Exported from where the torch image kept the model: that path stays the index's identity.
    # A local model (infra/model/, `make image MODEL=DIR`) is saved there too.
    assert any(
        f'save "${{MODEL_ID}}" "{raw_model_path}" --local /opt/export/local' in " ".join(r.split())
        for r in export_runs
    )
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
    assert json.loads(cmd) == ["handler.search"]
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
    # infra/model/ reaches the build, but only its README reaches git.
    assert "infra/model/" in copied
    ignored = (ROOT / ".gitignore").read_text().splitlines()
    assert {"infra/model/*", "!infra/model/README.md"} <= set(ignored)


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


def test_a_local_model_replaces_the_hubs(tiny_model, exported, tmp_path) -> None:
    """infra/model/ as `make image MODEL=DIR` fills it: a checkpoint is saved (no hub: the id
    does not exist), an export is taken as it is; with only the README the hub's id is used."""
    import importlib.util
    import shutil

    spec = importlib.util.spec_from_file_location("bake_model", ROOT / "infra/bake_model.py")
    bake = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bake)
    for given in (tiny_model, exported):
        local = tmp_path / given.name / "local"
        shutil.copytree(given, local)
        shutil.copy(ROOT / "infra/model/README.md", local / "README.md")
        target, out = tmp_path / given.name / "saved", tmp_path / given.name / "export"
        bake.save("no-such-org/no-such-model", target, local=local, exported=out)
        if given == exported:
            assert not target.exists() and (out / "export.json").is_file()
            assert not (out / "README.md").exists()
        else:
            assert (target / "model.safetensors").is_file() and not out.exists()


def test_the_local_template_differs_only_for_the_emulator_and_the_build(tmp_path) -> None:
    """`make sam-local`'s copy of template.yaml (infra/local_template.py): the HTTP API gets the
    binary media types SAM CLI's emulator needs to pass uploads base64-encoded, as API Gateway
    does by itself; the image functions get the build arguments. Nothing else changes, and the
    deployed template keeps no OpenAPI body (its routes are the events)."""
    out = tmp_path / "local.json"
    done = run(tool("python"), "infra/local_template.py", "template", str(TEMPLATE), str(out),
               "--build-arg", "PIP_INDEX_URL=http://172.29.0.1:1/simple/")  # fmt: skip
    assert done.returncode == 0, done.stderr
    local = json.loads(out.read_text())
    deployed = run(tool("python"), "-c", "import json, sys; from samtranslator.yaml_helper "
                   "import yaml_parse; json.dump(yaml_parse(open(sys.argv[1]).read()), sys.stdout)",
                   str(TEMPLATE))  # fmt: skip
    original = json.loads(deployed.stdout)
    api = original["Resources"]["SearchApi"]["Properties"]
    assert "DefinitionBody" not in api and "DefinitionUri" not in api
    body = local["Resources"]["SearchApi"]["Properties"].pop("DefinitionBody")
    assert "multipart/form-data" in body["x-amazon-apigateway-binary-media-types"]
    assert body["paths"] == {}
    for name in FUNCTIONS:
        build_args = local["Resources"][name]["Metadata"]["DockerBuildArgs"]
        assert build_args.pop("PIP_INDEX_URL") == "http://172.29.0.1:1/simple/"
    assert local == original


def test_env_json_only_sets_variables_the_template_declares() -> None:
    """sam local ignores --env-vars entries a function does not declare: a typo goes unnoticed."""
    env = json.loads((ROOT / "infra/env.json").read_text())
    for name, variables in env.items():
        declared = set(function(name)["Environment"]["Variables"])
        assert set(variables) <= declared, set(variables) - declared
