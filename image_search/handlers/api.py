"""The search function: API Gateway events through Mangum into the FastAPI app.

Importing this module is the function's init phase: it loads the model's text tower and the
index, and builds the app, so the first request does not pay for them. The loading starts first,
in a thread, and the web framework is imported and the app built while it runs: ONNX Runtime opens
a session and boto3 downloads the index with the GIL released, so they overlap the half second of
importing FastAPI instead of following it (issue 23: cold start to the first text answer). The
init phase ends once both are done; the image tower loads later (``serve/image_tower.py``).
"""

from __future__ import annotations

from typing import Any

from image_search.config import LogSettings
from image_search.observe import logs, metrics
from image_search.serve.service import get_service

logs.configure(logs.API, log_format=LogSettings().log_format)
_warming = get_service().warm_in_background()

# The imports below are the framework's: they run while the thread above loads (see the docstring).
from aws_lambda_powertools.utilities.typing import LambdaContext  # noqa: E402

from image_search.serve.api import create_app  # noqa: E402
from image_search.serve.lambda_http import make_handler  # noqa: E402

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


_warming.join()
