"""The build's state machine (template.yaml) run offline: its definition interpreted state by
state, each Task calling the real handler in handler.py, the Map reading its items from S3 as the
ItemReader does and building each child's input with the definition's ItemSelector.

Only what the definition uses is implemented (JSONPath ``$.a.b``, ``$$.Execution.Id`` and
``$$.Map.Item.Value.x``,
``States.StringToJson``, Parameters/ResultSelector/ResultPath/OutputPath, Choice on a boolean,
Map with ItemReader, ItemSelector, a failure tolerance and ResultWriter), and anything else fails
loudly, so an edit to the definition that this does not understand cannot pass unnoticed.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from image_search.storage import s3
from tests.support.factories import LambdaContext
from tests.support.handlers import entry_point
from tests.support.template import source

Handler = Callable[[dict[str, Any], object], dict[str, Any]]
STACK = "image-search"
FUNCTIONS = {
    "PlanFunctionArn": "BuildPlanFunction",
    "EmbedShardFunctionArn": "EmbedShardFunction",
    "MergeFunctionArn": "BuildMergeFunction",
}


class ExecutionFailed(Exception):
    """A state's error, named as Step Functions names it (``States.…`` or the exception's type)."""

    def __init__(self, error: str, cause: str) -> None:
        super().__init__(f"{error}: {cause}")
        self.error = error


@dataclass
class Execution:
    """One execution: what every Lambda was sent, by function, and the shards that failed."""

    client: s3.S3Client
    bucket: str
    handlers: dict[str, Handler]
    payloads: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    failed_children: int = 0
    execution_id: str = field(
        default_factory=lambda: (
            f"arn:aws:states:us-east-1:123456789012:execution:{STACK}:" + str(uuid.uuid4())
        )
    )

    def run(self, execution_input: dict[str, Any]) -> dict[str, Any]:
        context = {"Execution": {"Id": self.execution_id}}
        return self._run(definition(self.bucket), execution_input, context)

    def _run(
        self, machine: dict[str, Any], data: Any, context: dict[str, Any] | None = None
    ) -> Any:
        name = machine["StartAt"]
        while True:
            state = machine["States"][name]
            kind = state["Type"]
            if kind == "Succeed":
                return data
            if kind == "Fail":
                raise ExecutionFailed(
                    path(state["ErrorPath"], data), path(state["CausePath"], data)
                )
            if kind == "Choice":
                name = _choose(state, data)
                continue
            try:
                if kind == "Task":
                    data = self._task(state, data, context)
                elif kind == "Map":
                    data = self._map(state, data, context)
                else:
                    raise AssertionError(f"state type {kind} is not interpreted here")
            except AssertionError:
                raise
            except Exception as exc:
                (catch,) = state.get("Catch") or [None]
                if catch is None:
                    raise
                assert catch["ErrorEquals"] == ["States.ALL"], catch
                error = {"Error": getattr(exc, "error", type(exc).__name__), "Cause": str(exc)}
                data, name = _output(catch, data, error), catch["Next"]
                continue
            if state.get("End"):
                return data
            name = state["Next"]

    def _task(self, state: dict[str, Any], data: Any, context: dict[str, Any] | None) -> Any:
        assert state["Resource"] == "arn:aws:states:::lambda:invoke", state["Resource"]
        params = resolve(state["Parameters"], data, context)
        function = params["FunctionName"].rsplit(":", 1)[-1]
        payload = json.loads(json.dumps(params["Payload"]))  # as Lambda receives it
        self.payloads.setdefault(function, []).append(payload)
        output = json.loads(json.dumps(self.handlers[function](payload, LambdaContext())))
        result = {"ExecutedVersion": "$LATEST", "Payload": output, "StatusCode": 200}
        if "ResultSelector" in state:
            result = resolve(state["ResultSelector"], result, context)
        return _output(state, data, result)

    def _map(self, state: dict[str, Any], data: Any, context: dict[str, Any] | None) -> Any:
        reader = state["ItemReader"]
        assert reader["Resource"] == "arn:aws:states:::s3:getObject"
        assert reader["ReaderConfig"] == {"InputType": "JSON"}
        where = resolve(reader["Parameters"], data, None)
        items = json.loads(s3.get_bytes(self.client, bucket=where["Bucket"], key=where["Key"]))
        tolerated = path(state["ToleratedFailurePercentagePath"], data)
        assert path(state["MaxConcurrencyPath"], data) >= 1
        processor = state["ItemProcessor"]
        assert processor["ProcessorConfig"]["Mode"] == "DISTRIBUTED"
        results: list[dict[str, Any]] = []
        for index, item in enumerate(items):
            child = {**(context or {}), "Map": {"Item": {"Index": index, "Value": item}}}
            child_input = resolve(state["ItemSelector"], data, child)
            try:
                output = self._run(processor, child_input, context)
                results.append({"Input": child_input, "Output": output})
            except Exception:
                self.failed_children += 1
        if items and self.failed_children * 100 > tolerated * len(items):
            raise ExecutionFailed(
                "States.ExceedToleratedFailureThreshold", "too many shards failed"
            )
        return _output(state, data, self._write_results(state["ResultWriter"], data, results))

    def _write_results(
        self, writer: dict[str, Any], data: Any, results: list[dict[str, Any]]
    ) -> dict[str, Any]:
        """What ResultWriter does: the children's results and a manifest under the prefix."""
        assert writer["Resource"] == "arn:aws:states:::s3:putObject"
        where = resolve(writer["Parameters"], data, None)
        folder = f"{where['Prefix']}/{uuid.uuid4()}/"
        for name, body in (("SUCCEEDED_0.json", results), ("manifest.json", {"Results": 1})):
            s3.put_bytes(
                self.client,
                bucket=where["Bucket"],
                key=folder + name,
                data=json.dumps(body).encode(),
                content_type="application/json",
            )
        details = {"Bucket": where["Bucket"], "Key": folder + "manifest.json"}
        return {"MapRunArn": f"arn:aws:states:::mapRun:{STACK}", "ResultWriterDetails": details}


def definition(bucket: str) -> dict[str, Any]:
    """The state machine's definition with its substitutions made (stack parameter defaults)."""
    machine = source()["Resources"]["IndexBuildStateMachine"]["Properties"]
    params = source()["Parameters"]
    values = {
        **{
            name: f"arn:aws:lambda:us-east-1:123456789012:function:{fn}"
            for name, fn in FUNCTIONS.items()
        },
        "Bucket": bucket,
        "MapResultsPrefix": f"{params['IndexPrefix']['Default']}work/build/map-results",
        "ShardConcurrency": str(params["ShardConcurrency"]["Default"]),
        "ShardFailureTolerance": str(params["ShardFailureTolerance"]["Default"]),
    }
    assert set(values) == set(machine["DefinitionSubstitutions"]), "a new substitution"
    text = json.dumps(machine["Definition"])
    text = re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)
    return json.loads(text)


def real_handlers() -> dict[str, Handler]:
    """handler.py's entry points, each named in template.yaml by one function's Command."""
    resources = source()["Resources"]
    found = {}
    for function in FUNCTIONS.values():
        (command,) = resources[function]["Properties"]["ImageConfig"]["Command"]
        found[function] = entry_point(command.removeprefix("handler."))
    return found


def resolve(template: Any, data: Any, context: dict[str, Any] | None) -> Any:
    """Parameters-style templates: keys ending in ``.$`` take a path or intrinsic's value."""
    if isinstance(template, dict):
        out = {}
        for key, value in template.items():
            if key.endswith(".$"):
                out[key[:-2]] = _evaluate(value, data, context)
            else:
                out[key] = resolve(value, data, context)
        return out
    if isinstance(template, list):
        return [resolve(value, data, context) for value in template]
    return template


def path(expression: str, data: Any, context: dict[str, Any] | None = None) -> Any:
    if expression.startswith("$$."):
        assert context is not None, expression
        data, expression = context, expression[1:]
    assert expression == "$" or expression.startswith("$."), expression
    for part in expression[2:].split(".") if expression != "$" else []:
        data = data[part]
    return data


def _evaluate(expression: str, data: Any, context: dict[str, Any] | None) -> Any:
    intrinsic = re.fullmatch(r"States\.StringToJson\('(.*)'\)", expression)
    if intrinsic:
        return json.loads(intrinsic.group(1))
    return path(expression, data, context)


def _choose(state: dict[str, Any], data: Any) -> str:
    for choice in state["Choices"]:
        assert set(choice) == {"Variable", "BooleanEquals", "Next"}, choice
        if path(choice["Variable"], data) is choice["BooleanEquals"]:
            return str(choice["Next"])
    return str(state["Default"])


def _output(state: dict[str, Any], data: Any, result: Any) -> Any:
    where = state.get("ResultPath", "$")
    if where is None:
        combined = data
    elif where == "$":
        combined = result
    else:
        assert where.count(".") == 1, where
        combined = {**data, where[2:]: result}
    return path(state.get("OutputPath", "$"), combined)
