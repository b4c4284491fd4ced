"""The search function: API Gateway events through Mangum into the FastAPI app.

Importing this module is the function's init phase: it builds the app and loads the model and
the index then, so the first request does not pay for them.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from image_search.config import LogSettings
from image_search.observe import logs, metrics
from image_search.serve.api import create_app
from image_search.serve.lambda_http import make_handler
from image_search.serve.service import get_service

logs.configure(logs.API, log_format=LogSettings().log_format)
logger = logs.powertools_logger(logs.API)
api_metrics = metrics.for_service(logs.API)

app = create_app()
_asgi = make_handler(app)


@logger.inject_lambda_context(clear_state=True)
@api_metrics.log_metrics
def search(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """One HTTP request (an HTTP API or REST API event) answered by the app."""
    # The request's metrics blob is printed by log_metrics as this returns, raised or not.
    with metrics.printed_at_return():
        return _asgi(event, context)


get_service().warm()
