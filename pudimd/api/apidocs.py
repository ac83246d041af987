"""``GET /api/v1/docs``: a page listing the operations of ``/api/v1/openapi.json`` by tag,
with their parameters, bodies and answers.  Self-contained (the daemon may run offline):
the page, its script and its style sheet are served here, so the default Content
Security Policy (``default-src 'self'``) holds with no inline script."""

from __future__ import annotations

from aiohttp import web

__all__ = ["add_routes"]

_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<title>pudimd API</title>
<link rel="stylesheet" href="/api/v1/docs/app.css">
<script src="/api/v1/docs/app.js" defer></script>
</head><body>
<header><h1>pudimd API <small id="version"></small></h1>
<p>The machine-readable document: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a>
(OpenAPI 3.1). Errors are RFC 9457 problem documents.</p></header>
<nav id="toc"></nav><main id="ops"><p>Loading&hellip;</p></main>
</body></html>
"""

_SCRIPT = r"""'use strict';
function el(tag, text, cls) {
  const e = document.createElement(tag);
  if (text !== undefined && text !== null) e.textContent = String(text);
  if (cls) e.className = cls;
  return e;
}
function refName(ref) { return ref.split('/').pop(); }
function schemaText(schema) {
  if (!schema) return '';
  if (schema.$ref) return refName(schema.$ref);
  if (schema.enum) return schema.enum.join(' | ');
  if (schema.type === 'array') return schemaText(schema.items) + '[]';
  if (schema.anyOf) return schema.anyOf.map(schemaText).join(' | ');
  return schema.type || 'any';
}
function contentList(content) {
  const ul = el('ul');
  for (const [kind, media] of Object.entries(content || {})) {
    ul.append(el('li', kind + ': ' + schemaText(media.schema)));
  }
  return ul;
}
function operation(method, path, op) {
  const box = el('details', null, 'op');
  const sum = el('summary');
  sum.append(el('span', method.toUpperCase(), 'method ' + method), el('code', path),
    el('span', ' ' + (op.summary || '')));
  box.append(sum);
  if (op.description) box.append(el('p', op.description));
  const params = (op.parameters || []).filter(p => !p.$ref);
  if (params.length) {
    box.append(el('h4', 'Parameters'));
    const ul = el('ul');
    for (const p of params) {
      const where = ' (' + p.in + (p.required ? ', required' : '') + '): ';
      const text = p.description ? ' \u2014 ' + p.description : '';
      ul.append(el('li', p.name + where + schemaText(p.schema) + text));
    }
    box.append(ul);
  }
  if (op.requestBody) {
    box.append(el('h4', 'Body' + (op.requestBody.required ? '' : ' (optional)')));
    if (op.requestBody.description) box.append(el('p', op.requestBody.description));
    box.append(contentList(op.requestBody.content));
  }
  box.append(el('h4', 'Responses'));
  const ul = el('ul');
  for (const [status, r] of Object.entries(op.responses || {})) {
    const li = el('li', status + ' ' + (r.description || ''));
    if (r.content) li.append(contentList(r.content));
    ul.append(li);
  }
  box.append(ul);
  return box;
}
function schemaBox(name, schema) {
  const box = el('details', null, 'schema');
  box.id = 'schema-' + name;
  box.append(el('summary', name));
  if (schema.description) box.append(el('p', schema.description));
  const ul = el('ul');
  const required = new Set(schema.required || []);
  for (const [prop, sub] of Object.entries(schema.properties || {})) {
    const text = sub.description ? ' \u2014 ' + sub.description : '';
    const must = required.has(prop) ? ' (required)' : '';
    ul.append(el('li', prop + must + ': ' + schemaText(sub) + text));
  }
  box.append(ul);
  return box;
}
async function main() {
  const main = document.getElementById('ops');
  const toc = document.getElementById('toc');
  let spec;
  try {
    const answer = await fetch('/api/v1/openapi.json');
    spec = await answer.json();
  } catch (err) {
    main.textContent = 'Cannot read /api/v1/openapi.json: ' + err;
    return;
  }
  document.getElementById('version').textContent = spec.info.version;
  main.textContent = '';
  const byTag = new Map((spec.tags || []).map(t => [t.name, []]));
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const [method, op] of Object.entries(item)) {
      const tag = (op.tags || ['other'])[0];
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([method, path, op]);
    }
  }
  const tagText = new Map((spec.tags || []).map(t => [t.name, t.description]));
  for (const [tag, ops] of byTag) {
    const section = el('section');
    section.id = 'tag-' + tag;
    section.append(el('h2', tag));
    if (tagText.get(tag)) section.append(el('p', tagText.get(tag)));
    for (const [method, path, op] of ops) section.append(operation(method, path, op));
    main.append(section);
    const link = el('a', tag);
    link.href = '#tag-' + tag;
    toc.append(link);
  }
  const schemas = el('section');
  schemas.append(el('h2', 'Schemas'));
  for (const [name, schema] of Object.entries(spec.components.schemas || {})) {
    schemas.append(schemaBox(name, schema));
  }
  main.append(schemas);
}
main();
"""

_STYLE = """body { font-family: system-ui, sans-serif; margin: 0 auto; max-width: 70em; }
body { padding: 1em; }
nav a { margin-right: 1em; }
code { font-size: 1.05em; margin: 0 .5em; }
details { border: 1px solid #ddd; border-radius: 4px; margin: .3em 0; padding: .3em .6em; }
summary { cursor: pointer; }
.method { display: inline-block; min-width: 4.5em; font-weight: bold; }
.get { color: #06c; } .post { color: #080; }
.put, .patch { color: #a60; } .delete { color: #c00; }
h4 { margin: .6em 0 .2em; }
"""


async def _page(request: web.Request) -> web.Response:
    return web.Response(text=_PAGE, content_type="text/html")


async def _script(request: web.Request) -> web.Response:
    return web.Response(text=_SCRIPT, content_type="text/javascript")


async def _style(request: web.Request) -> web.Response:
    return web.Response(text=_STYLE, content_type="text/css")


def add_routes(app: web.Application) -> None:
    """The docs page, its script and style sheet (no credentials needed)."""
    app.router.add_get("/api/v1/docs", _page)
    app.router.add_get("/api/v1/docs/app.js", _script)
    app.router.add_get("/api/v1/docs/app.css", _style)
