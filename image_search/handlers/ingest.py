"""The ingest function: S3's change events from SQS, published as segments in seconds.

Importing this module is the function's init phase: it loads the model then, so the first batch
does not pay for it. Nothing here builds the API's app or takes the build lease.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from image_search.config import LogSettings
from image_search.ingest import lambda_sqs
from image_search.observe import logs

logs.configure(logs.INGEST, log_format=LogSettings().log_format)
logger = logs.powertools_logger(logs.INGEST)


@logger.inject_lambda_context(clear_state=True)
def ingest(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    """One SQS batch as one segment; the messages to deliver again (``batchItemFailures``)."""
    _, response = lambda_sqs.handle(event)
    return response


lambda_sqs.warm()
