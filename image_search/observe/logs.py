"""Where log records go: one JSON object per line (Powertools' formatter, with the Lambda
context's request id and cold start) on Lambda or with ``IMAGE_SEARCH_LOG_FORMAT=json``, a
readable line elsewhere."""

from __future__ import annotations

import logging
import os
import sys
from functools import lru_cache
from typing import TextIO

from aws_lambda_powertools import Logger

API = "image-search-api"
BUILD = "image-search-build"
INGEST = "image-search-ingest"
TEXT_FORMAT = "%(levelname)s %(name)s: %(message)s"
# The handler the Lambda Python runtime puts on the root logger: its lines would repeat ours.
LAMBDA_RUNTIME_HANDLER = "LambdaLoggerHandler"


def on_lambda() -> bool:
    return bool(os.environ.get("AWS_LAMBDA_FUNCTION_NAME"))


def json_lines(log_format: str) -> bool:
    """``auto`` means JSON on Lambda (where CloudWatch parses it) and text elsewhere."""
    return log_format == "json" or (log_format == "auto" and on_lambda())


class _Stdout(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes to whatever ``sys.stdout`` is at the time, as Lambda and test captures expect."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stdout

    @stream.setter
    def stream(self, _: TextIO) -> None:
        pass


@lru_cache(maxsize=3)
def powertools_logger(service: str) -> Logger:
    """The Powertools logger of ``service``: its formatter renders every record as JSON, and its
    ``inject_lambda_context`` adds the invocation's fields to them."""
    name = os.environ.get("POWERTOOLS_SERVICE_NAME", service)
    return Logger(service=name, logger_handler=_Stdout(), name="%(name)s")


def configure(service: str, *, log_format: str) -> None:
    """Send every record (this package's, botocore's, uvicorn's) to one place, once."""
    root = logging.getLogger()
    if not json_lines(log_format):
        if not root.handlers:
            logging.basicConfig(level=logging.INFO, format=TEXT_FORMAT)
        return
    handler = powertools_logger(service).registered_handler
    for other in list(root.handlers):
        # The runtime's, and another service's configured earlier in this process (a test that
        # runs the build and the API): one line per record.
        if type(other).__name__ == LAMBDA_RUNTIME_HANDLER or isinstance(other, _Stdout):
            if other is not handler:
                root.removeHandler(other)
    if handler not in root.handlers:
        root.addHandler(handler)
    if root.level == logging.NOTSET or root.level > logging.INFO:  # keep DEBUG if set on purpose
        root.setLevel(logging.INFO)
