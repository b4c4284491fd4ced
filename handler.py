"""Entry points: ``app`` for uvicorn, ``handler`` for Lambda behind API Gateway."""

from image_search.serve.api import create_app
from image_search.serve.lambda_http import make_handler
from image_search.serve.service import get_service

app = create_app()
handler = make_handler(app)
# Load the model and the index once per process, now: Lambda's init phase pays for them
# rather than the first request.
get_service().warm()
