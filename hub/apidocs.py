"""The API's own description: the OpenAPI document at ``GET /openapi.json`` (hub.openapi) and the
browsable reference at ``GET /docs``, that document rendered as one HTML page on the server, with
no script and nothing fetched from elsewhere.

Operations are grouped by their first path segment (or their tag), each with its parameters, the
request body's schema and every answer; schemas are shown resolved one level (a ``$ref`` becomes
a link to the schema's own section at the end of the page).
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from html import escape
from typing import Any

from aiohttp import web

from .appkeys import SETTINGS
from .openapi import openapi_document
from .params import json_response

__all__ = ["add_routes", "render_docs"]

_METHODS = ("get", "post", "put", "patch", "delete")
_CSS = """
body{font:15px/1.5 system-ui,sans-serif;margin:0;color:#1b1f24;background:#fafafa}
header{background:#14324a;color:#fff;padding:1rem 1.5rem}header a{color:#cfe3ff}
main{display:grid;grid-template-columns:16rem minmax(0,1fr);gap:1.5rem;padding:1.5rem;max-width:80rem}
nav{position:sticky;top:1rem;align-self:start;font-size:14px}nav a{display:block;color:#14324a}
section.op{background:#fff;border:1px solid #d8dee4;border-radius:6px;padding:.75rem 1rem;margin:0 0 1rem}
.m{display:inline-block;min-width:4.2rem;font-weight:700;text-transform:uppercase;font-size:13px}
.get{color:#0a6b2f}.post{color:#0b4fa8}.put,.patch{color:#8a5a00}.delete{color:#a11}
code,pre{font:13px/1.4 ui-monospace,monospace}pre{background:#f3f5f7;padding:.5rem;overflow:auto}
table{border-collapse:collapse;margin:.25rem 0}td,th{border:1px solid #d8dee4;padding:.2rem .5rem;text-align:left}
@media(max-width:48rem){main{grid-template-columns:1fr}nav{position:static}}
"""


def _group(path: str, op: dict[str, Any]) -> str:
    tags = op.get("tags")
    if tags:
        return str(tags[0])
    segments = [s for s in path.split("/") if s and not s.startswith("{")]
    if segments and segments[0] == "v1" and len(segments) > 1:
        return segments[1]
    return segments[0] if segments else "root"


# Upstream systems' daily operations first; pages, vendors' webhooks and operations last.
_FIRST = ("events", "customers", "deliveries", "messages", "feedback", "webhooks", "push")
_LAST = ("customer pages", "operations")


def _group_order(group: str) -> tuple[int, str]:
    if group in _FIRST:
        return (0, f"{_FIRST.index(group):02d}")
    return (2, f"{_LAST.index(group):02d}") if group in _LAST else (1, group)


def _anchor(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text).strip("-").lower()


def _schema_html(schema: dict[str, Any] | None) -> str:
    if not schema:
        return ""
    ref = schema.get("$ref")
    if isinstance(ref, str):
        name = ref.rsplit("/", 1)[-1]
        return f'<a href="#schema-{_anchor(name)}"><code>{escape(name)}</code></a>'
    compact = json.dumps(schema, ensure_ascii=False)
    if len(compact) <= 60:
        return f"<code>{escape(compact)}</code>"
    return f"<pre>{escape(json.dumps(schema, indent=2, ensure_ascii=False))}</pre>"


def _content_html(content: dict[str, Any] | None) -> str:
    if not content:
        return ""
    parts = []
    for media, body in content.items():
        parts.append(f"<div><code>{escape(media)}</code> {_schema_html(body.get('schema'))}</div>")
    return "".join(parts)


def _operation_html(path: str, method: str, op: dict[str, Any], shared: list[dict[str, Any]]) -> str:
    op_id = str(op.get("operationId") or f"{method}-{path}")
    out = [f'<section class="op" id="op-{_anchor(op_id)}">']
    out.append(f'<h3><span class="m {method}">{method}</span> <code>{escape(path)}</code></h3>')
    if op.get("summary"):
        out.append(f"<p>{escape(str(op['summary']))}</p>")
    if op.get("description"):
        out.append(f"<p>{escape(str(op['description']))}</p>")
    auth = "none" if op.get("security") == [] else "API key (<code>Authorization: Bearer …</code>)"
    out.append(f"<p><b>Authentication</b>: {auth}</p>")
    params = [*shared, *op.get("parameters", [])]
    if params:
        out.append("<table><tr><th>parameter</th><th>in</th><th>required</th><th>schema</th><th></th></tr>")
        for p in params:
            out.append(
                f"<tr><td><code>{escape(str(p.get('name')))}</code></td><td>{escape(str(p.get('in')))}</td>"
                f"<td>{'yes' if p.get('required') else 'no'}</td>"
                f"<td><code>{escape(json.dumps(p.get('schema', {}), ensure_ascii=False))}</code></td>"
                f"<td>{escape(str(p.get('description', '')))}</td></tr>"
            )
        out.append("</table>")
    body = op.get("requestBody")
    if body:
        out.append(f"<p><b>Request body</b></p>{_content_html(body.get('content'))}")
    out.append("<table><tr><th>status</th><th>meaning</th><th>body</th></tr>")
    for status, answer in sorted(op.get("responses", {}).items()):
        out.append(
            f"<tr><td><code>{escape(str(status))}</code></td><td>{escape(str(answer.get('description', '')))}</td>"
            f"<td>{_content_html(answer.get('content'))}</td></tr>"
        )
    out.append("</table></section>")
    return "".join(out)


def render_docs(document: dict[str, Any]) -> str:
    """The HTML page for an OpenAPI document."""
    groups: dict[str, list[str]] = defaultdict(list)
    toc: dict[str, list[tuple[str, str]]] = defaultdict(list)
    for path, item in document.get("paths", {}).items():
        shared = item.get("parameters", [])
        for method in _METHODS:
            op = item.get(method)
            if op is None:
                continue
            group = _group(path, op)
            groups[group].append(_operation_html(path, method, op, shared))
            op_id = str(op.get("operationId") or f"{method}-{path}")
            toc[group].append((f"op-{_anchor(op_id)}", f"{method.upper()} {path}"))
    info = document.get("info", {})
    title = escape(str(info.get("title", "API")))
    nav = ['<nav><p><a href="/openapi.json">openapi.json</a></p>']
    sections = []
    for group in sorted(groups, key=_group_order):
        nav.append(f'<p><b><a href="#group-{_anchor(group)}">{escape(group)}</a></b>')
        nav.extend(f'<a href="#{a}">{escape(label)}</a>' for a, label in toc[group])
        nav.append("</p>")
        sections.append(f'<h2 id="group-{_anchor(group)}">{escape(group)}</h2>{"".join(groups[group])}')
    schemas = document.get("components", {}).get("schemas", {})
    if schemas:
        nav.append('<p><b><a href="#schemas">schemas</a></b></p>')
        sections.append('<h2 id="schemas">Schemas</h2>')
        for name in sorted(schemas):
            sections.append(
                f'<section class="op" id="schema-{_anchor(name)}"><h3><code>{escape(name)}</code></h3>'
                f"<pre>{escape(json.dumps(schemas[name], indent=2, ensure_ascii=False))}</pre></section>"
            )
    nav.append("</nav>")
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{title} reference</title><style>{_CSS}</style></head><body>"
        f"<header><h1>{title}: API reference (version {escape(str(info.get('version', '')))})</h1>"
        f"<p>{escape(str(info.get('description', '')))}</p>"
        '<p>The same document as JSON: <a href="/openapi.json">/openapi.json</a></p></header>'
        f"<main>{''.join(nav)}<div>{''.join(sections)}</div></main></body></html>"
    )


@functools.cache
def _page() -> str:
    """The reference page, rendered once per process (the document does not change while it runs)."""
    return render_docs(openapi_document())


async def docs(request: web.Request) -> web.Response:
    return web.Response(
        text=_page(),
        content_type="text/html",
        headers={
            "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
            "X-Content-Type-Options": "nosniff",
        },
    )


async def openapi(request: web.Request) -> web.Response:
    return json_response(openapi_document(request.app[SETTINGS].public_url))


def add_routes(app: web.Application) -> None:
    """``GET /openapi.json`` (the document, naming this hub's public URL) and ``GET /docs``."""
    app.router.add_get("/openapi.json", openapi)
    app.router.add_get("/docs", docs)
