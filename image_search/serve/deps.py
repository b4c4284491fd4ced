"""Every FastAPI dependency of the routes, as named ``Annotated`` aliases.

The dependencies are ``async`` although they never await: FastAPI runs a plain ``def`` dependency
in its thread pool, a thread hop on every request for a few microseconds of work.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from image_search.config import Settings, get_settings
from image_search.errors import UnauthorizedError
from image_search.serve.bodies import EmbedBody, QueryBody, read_embed, read_query
from image_search.serve.service import SearchService, get_service

# auto_error=False: a missing header is this module's decision (keys may not be configured).
api_key_header = APIKeyHeader(name="x-api-key", auto_error=False, description="an API key")
bearer = HTTPBearer(auto_error=False, description="an API key as a Bearer token")


async def _settings() -> Settings:
    return get_settings()


async def _service() -> SearchService:
    return get_service()


SettingsDep = Annotated[Settings, Depends(_settings)]
ServiceDep = Annotated[SearchService, Depends(_service)]
HeaderKey = Annotated[str | None, Depends(api_key_header)]
BearerKey = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


async def require_api_key(
    header_key: HeaderKey, credentials: BearerKey, settings: SettingsDep
) -> str:
    """When IMAGE_SEARCH_API_KEYS is set, demand one of them as x-api-key or a Bearer token.

    Returns who is calling: ``key-<n>`` for the n-th configured key (never the key itself), or
    ``""`` when no keys are configured (everyone is then the same anonymous caller).
    """
    keys = settings.api_keys
    if not keys:
        return ""
    offered = header_key or (credentials.credentials.strip() if credentials else "")
    # compare_digest against every key, so timing reveals neither which key nor how much matched.
    matches = [hmac.compare_digest(offered.encode(), key.encode()) for key in keys]
    if not offered or not any(matches):
        raise UnauthorizedError(
            "missing or invalid API key (Authorization: Bearer <key> or x-api-key)"
        )
    return f"key-{matches.index(True)}"


# For a router's ``dependencies``: its routes demand a key. FastAPI runs a dependency once per
# request, so a route that also takes ``CallerDep`` gets this same check's answer.
RequireApiKey = Depends(require_api_key)
CallerDep = Annotated[str, Depends(require_api_key)]


async def _query_body(request: Request, settings: SettingsDep) -> QueryBody:
    return await read_query(request, max_file_bytes=settings.max_upload_bytes)


async def _embed_body(request: Request, settings: SettingsDep) -> EmbedBody:
    return await read_embed(request, max_file_bytes=settings.max_upload_bytes)


# Bodies taken as JSON or multipart alike (serve/bodies.py).
QueryBodyDep = Annotated[QueryBody, Depends(_query_body)]
EmbedBodyDep = Annotated[EmbedBody, Depends(_embed_body)]
