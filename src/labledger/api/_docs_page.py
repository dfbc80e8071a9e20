"""``/docs``: the API reference, rendered on the server from the OpenAPI document.

FastAPI's Swagger and ReDoc pages load their scripts from a CDN and start
with an inline script. Under the dashboard's CSP (``script-src 'self'``) and
on a machine without the internet they show a blank page, so the reference
is a plain dashboard page instead: every operation with its parameters, body
and responses, and the schemas, straight from ``app.openapi()``. The machine
form stays at ``/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from labledger.api._deps import Reader, State
from labledger.api._html import code, heading, link, render, table, text

router = APIRouter(include_in_schema=False)
METHODS = ("get", "post", "put", "patch", "delete")
_pretty = msgspec.json.Encoder(order="sorted")


@router.get("/docs")
def api_docs(request: Request, state: State, _: Reader) -> HTMLResponse:
    """Every operation of the API, grouped by path, and every schema it names."""
    spec = request.app.openapi()
    sections: list[dict[str, Any]] = [
        text(
            f"{spec['info']['title']} API, version {spec['info']['version']}. "
            "The machine-readable document is ",
            link("/openapi.json", "/openapi.json"),
            ". Off loopback every call but /healthz needs the bearer token.",
        ),
        heading("Operations"),
        table("operations", ["method", "path", "summary"], list(_operation_rows(spec))),
    ]
    for path, item in spec.get("paths", {}).items():
        for method in METHODS:
            if method in item:
                sections += _operation(path, method, item[method])
    schemas = spec.get("components", {}).get("schemas", {})
    if schemas:
        sections.append(heading("Schemas"))
        for name, schema in sorted(schemas.items()):
            sections += [heading(name, 3), code(f"schema-{name}", _json(schema))]
    return render("docs", "API reference", sections, head=state.store.head())


def _operation_rows(spec: Mapping[str, Any]) -> list[list[Any]]:
    return [
        [method.upper(), link(f"#{_anchor(path, method)}", path), op.get("summary", "")]
        for path, item in spec.get("paths", {}).items()
        for method in METHODS
        if (op := item.get(method)) is not None
    ]


def _operation(path: str, method: str, op: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = [
        heading(f"{method.upper()} {path}", 3),
        text(op.get("description") or op.get("summary", ""), text_id=_anchor(path, method)),
    ]
    params = [
        [
            p["name"],
            p["in"],
            "yes" if p.get("required") else "no",
            _type(p.get("schema", {})),
            p.get("description", ""),
        ]
        for p in op.get("parameters", [])
    ]
    if params:
        out.append(
            table(
                f"params-{_anchor(path, method)}",
                ["parameter", "in", "required", "type", "description"],
                params,
            )
        )
    body = op.get("requestBody", {}).get("content", {})
    for media, content in body.items():
        out.append(text(f"Body ({media}): {_type(content.get('schema', {}))}"))
    responses = [
        [status, r.get("description", ""), _type(_first_schema(r))]
        for status, r in op.get("responses", {}).items()
    ]
    if responses:
        out.append(
            table(f"responses-{_anchor(path, method)}", ["status", "meaning", "body"], responses)
        )
    return out


def _first_schema(response: Mapping[str, Any]) -> Mapping[str, Any]:
    for content in response.get("content", {}).values():
        return dict(content.get("schema", {}))
    return {}


def _type(schema: Mapping[str, Any]) -> str:
    """A schema in a few words: a named schema by name, arrays and unions spelled out."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    if "anyOf" in schema:
        return " | ".join(_type(s) for s in schema["anyOf"])
    if schema.get("type") == "array":
        return f"array of {_type(schema.get('items', {}))}"
    return str(schema.get("type", "any" if not schema else "object"))


def _anchor(path: str, method: str) -> str:
    slug = "".join(c if c.isalnum() else "-" for c in path).strip("-")
    return f"op-{method}-{slug}"


def _json(value: object) -> str:
    return msgspec.json.format(_pretty.encode(value), indent=2).decode()
