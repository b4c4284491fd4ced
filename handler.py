"""Entry points: ``app`` for uvicorn, ``handler`` for Lambda behind API Gateway."""

from mangum import Mangum

from image_search.api import create_app
from image_search.service import get_service

app = create_app()
# Lifespan off: Mangum would run it on every invocation; the model and index load once per
# process instead, right here, so Lambda's init phase pays for them and not the first request.
handler = Mangum(app, lifespan="off")
get_service().warm()
