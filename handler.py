"""Entry points only: ``app`` for uvicorn, ``handler`` for the search API behind API Gateway, and
``plan``, ``embed_shard``, ``merge`` for the index build's state machine (template.yaml names
them)."""

import os

from image_search.build.step_functions import embed_shard_handler as embed_shard
from image_search.build.step_functions import merge_handler as merge
from image_search.build.step_functions import plan_handler as plan
from image_search.serve.api import create_app
from image_search.serve.lambda_http import make_handler
from image_search.serve.service import get_service

__all__ = ["app", "embed_shard", "handler", "merge", "plan"]

app = create_app()
handler = make_handler(app)
# Lambda names the configured entry point in _HANDLER. The search function loads the model and
# the index now, so its init phase pays for them rather than the first request; the build
# functions serve no index and load their model when they run.
if os.environ.get("_HANDLER", "handler.handler") == "handler.handler":
    get_service().warm()
