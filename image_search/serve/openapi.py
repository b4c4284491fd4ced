"""The OpenAPI description of bodies FastAPI does not read itself (JSON or multipart alike)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel

SCHEMAS = "#/components/schemas/{model}"


def either_body(model: type[BaseModel], *, form_field: str | None) -> dict[str, Any]:
    """A route's ``openapi_extra``: a body that is ``model`` as JSON, or a multipart form (the
    JSON in ``form_field`` beside the files; without one, ``texts`` fields and files)."""
    if form_field is None:
        fields = {"texts": {"type": "array", "items": {"type": "string"}}}
    else:
        fields = {form_field: {"type": "string", "description": f"a {model.__name__} as JSON"}}
    form = {
        "type": "object",
        "properties": fields,
        "additionalProperties": {"type": "string", "format": "binary"},
    }
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": SCHEMAS.format(model=model.__name__)}},
                "multipart/form-data": {"schema": form},
            },
        }
    }


def add_schemas(app: FastAPI, models: Sequence[type[BaseModel]]) -> None:
    """Put ``models`` (and the models they hold) in the app's OpenAPI components, where
    ``either_body`` refers to them."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = FastAPI.openapi(app)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            for model in models:
                found = model.model_json_schema(ref_template=SCHEMAS)
                components.update(found.pop("$defs", {}))
                components[model.__name__] = found
        return app.openapi_schema  # type: ignore[return-value]

    app.openapi = openapi  # type: ignore[method-assign]
