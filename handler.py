"""Entry points only: ``app`` for uvicorn, ``handler`` for the search API behind API Gateway,
``build`` for the scheduled index build (template.yaml names them)."""

from image_search.build.lambda_handler import build_handler
from image_search.observe.lambda_entry import (
    configure_logging,
    function_handler_name,
    observed,
    observed_build,
)
from image_search.observe.logs import API
from image_search.serve.api import create_app
from image_search.serve.lambda_http import make_handler
from image_search.serve.service import get_service

__all__ = ["app", "build", "handler"]

configure_logging(function_handler_name())
app = create_app()
handler = observed(make_handler(app), service=API)
build = observed_build(build_handler)
# Lambda names the configured entry point in _HANDLER. The search function loads the model and
# the index now, so its init phase pays for them rather than the first request; the build
# function serves no index and loads its model when it runs.
if function_handler_name() == "handler.handler":
    get_service().warm()
