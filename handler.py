"""Entry points only: ``app`` for uvicorn, ``handler`` for the search API behind API Gateway, and
``plan``, ``embed_shard``, ``merge`` for the index build's state machine (template.yaml names
them)."""

from image_search.build.step_functions import embed_shard_handler, merge_handler, plan_handler
from image_search.observe.lambda_entry import (
    configure_logging,
    function_handler_name,
    observed,
    observed_build,
)
from image_search.observe.logs import API, BUILD
from image_search.serve.api import create_app
from image_search.serve.lambda_http import make_handler
from image_search.serve.service import get_service

__all__ = ["app", "embed_shard", "handler", "merge", "plan"]

configure_logging(function_handler_name())
app = create_app()
handler = observed(make_handler(app), service=API)
plan = observed(plan_handler, service=BUILD)
embed_shard = observed(embed_shard_handler, service=BUILD)
# The merge's summary is the build's: its counts are logged and sent as metrics.
merge = observed_build(merge_handler)
# Lambda names the configured entry point in _HANDLER. The search function loads the model and
# the index now, so its init phase pays for them rather than the first request; the build
# functions serve no index and load their model when they run.
if function_handler_name() == "handler.handler":
    get_service().warm()
