"""Entry points only: ``app`` for uvicorn, ``handler`` for the search API behind API Gateway,
``build`` for the scheduled index build (template.yaml names them)."""

import os

from image_search.build.lambda_handler import build_handler as build
from image_search.serve.api import create_app
from image_search.serve.lambda_http import make_handler
from image_search.serve.service import get_service

__all__ = ["app", "build", "handler"]

app = create_app()
handler = make_handler(app)
# Lambda names the configured entry point in _HANDLER. The search function loads the model and
# the index now, so its init phase pays for them rather than the first request; the build
# function serves no index and loads its model when it runs.
if os.environ.get("_HANDLER", "handler.handler") == "handler.handler":
    get_service().warm()
