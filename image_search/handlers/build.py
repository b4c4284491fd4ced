"""The index build's functions, one per state of the state machine in template.yaml: Plan → a
Map of EmbedShard → Merge (which is also the Abandon state, with ``abandon`` in its payload).

Nothing here builds the API's app or loads the index: these functions serve no searches, and
each loads the model only when its state needs it.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from image_search.build import step_functions
from image_search.config import LogSettings
from image_search.observe import builds, logs, metrics

logs.configure(logs.BUILD, log_format=LogSettings().log_format)
logger = logs.powertools_logger(logs.BUILD)
build_metrics = metrics.for_service(logs.BUILD)


@logger.inject_lambda_context(clear_state=True)
def plan(event: dict[str, Any] | None, context: LambdaContext) -> dict[str, Any]:
    """List, diff and save the plan (or answer ``busy``); the Map's input is its output."""
    return step_functions.plan_handler(event, context)


@logger.inject_lambda_context(clear_state=True)
def embed_shard(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Embed one shard of the plan, or find it done."""
    return step_functions.embed_shard_handler(event, context)


@logger.inject_lambda_context(clear_state=True)
@build_metrics.log_metrics
def merge(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """Publish the build from the shards' results, or give the lease back when abandoned; the
    build's counts are logged and sent as metrics from here, whose summary is the build's."""
    with metrics.printed_at_return():
        try:
            summary = step_functions.merge_handler(event, context)
        except Exception:
            builds.failed()
            raise
        builds.report(summary)
        return summary
