// The API explorer: reads /openapi.json, lists every operation with its parameters,
// request body and answers, and sends a request from the page. It ships inside the binary
// and loads nothing from elsewhere.
'use strict';

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === 'class') node.className = v; else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

// A schema as short text: `#/components/schemas/X` as X, arrays as X[].
function typeOf(schema) {
  if (!schema) return '';
  if (schema.$ref) return schema.$ref.split('/').pop();
  if (schema.oneOf) return schema.oneOf.map(typeOf).join(' | ');
  if (schema.type === 'array') return typeOf(schema.items) + '[]';
  if (Array.isArray(schema.type)) return schema.type.join(' | ');
  return schema.type || 'object';
}

// An example body for a schema, so a request can be sent with little typing.
function example(schema, spec, depth = 0) {
  if (!schema || depth > 4) return null;
  if (schema.$ref) return example(spec.components.schemas[schema.$ref.split('/').pop()], spec, depth + 1);
  if (schema.oneOf) return example(schema.oneOf[0], spec, depth + 1);
  const type = Array.isArray(schema.type) ? schema.type.find((t) => t !== 'null') : schema.type;
  if (schema.enum) return schema.enum[0];
  switch (type) {
    case 'object': {
      const out = {};
      for (const name of schema.required || []) out[name] = example(schema.properties[name], spec, depth + 1);
      return out;
    }
    case 'array': return [example(schema.items, spec, depth + 1)];
    case 'integer': return schema.minimum ?? 0;
    case 'number': return 0;
    case 'boolean': return false;
    default: return 'x';
  }
}

function parameterRows(parameters) {
  const rows = parameters.map((p) => el('tr', {},
    el('td', {}, el('code', {}, p.name)), el('td', {}, p.in), el('td', {}, typeOf(p.schema)),
    el('td', {}, p.required ? 'required' : ''), el('td', {}, p.description || '')));
  return el('table', {}, el('tr', {}, el('th', {}, 'name'), el('th', {}, 'in'), el('th', {}, 'type'), el('th', {}, ''), el('th', {}, '')), ...rows);
}

function responseRows(responses) {
  const rows = Object.entries(responses).map(([status, r]) => {
    const content = r.content && Object.values(r.content)[0];
    return el('tr', {}, el('td', {}, status), el('td', {}, content ? typeOf(content.schema) : ''), el('td', {}, r.description || ''));
  });
  return el('table', {}, el('tr', {}, el('th', {}, 'status'), el('th', {}, 'body'), el('th', {}, '')), ...rows);
}

function tryIt(method, path, op, spec) {
  const form = el('form', {});
  const inputs = {};
  for (const p of op.parameters || []) {
    const id = `${method}-${path}-${p.name}`.replace(/[^a-z0-9-]/gi, '_');
    inputs[p.name] = el('input', { id, name: p.name });
    form.append(el('p', {}, el('label', { for: id }, `${p.name} `), inputs[p.name]));
  }
  let body = null;
  const json = op.requestBody && op.requestBody.content['application/json'];
  if (json) {
    const id = `${method}-${path}-body`.replace(/[^a-z0-9-]/gi, '_');
    body = el('textarea', { id, 'aria-label': 'request body' });
    body.value = JSON.stringify(example(json.schema, spec), null, 2);
    form.append(el('p', {}, el('label', { for: id }, 'Body (JSON)')), body);
  }
  const out = el('pre', { 'aria-live': 'polite' });
  form.append(el('p', {}, el('button', { type: 'submit' }, 'Send')), out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    let url = path;
    const query = new URLSearchParams();
    for (const p of op.parameters || []) {
      const v = inputs[p.name].value;
      if (!v) continue;
      if (p.in === 'path') url = url.replace(`{${p.name}}`, encodeURIComponent(v));
      else if (p.in === 'query') for (const part of v.split('&')) query.append(p.name, part);
    }
    if ([...query].length) url += `?${query}`;
    const headers = {};
    const key = $('api-key').value.trim();
    if (key) headers.Authorization = `Bearer ${key}`;
    const init = { method: method.toUpperCase(), headers };
    if (body) { headers['Content-Type'] = 'application/json'; init.body = body.value; }
    out.textContent = `${init.method} ${url} …`;
    try {
      const response = await fetch(url, init);
      const text = await response.text();
      let shown = text;
      try { shown = JSON.stringify(JSON.parse(text), null, 2); } catch (_) { /* not JSON: as sent */ }
      out.textContent = `${response.status} ${response.statusText}\n\n${shown}`;
    } catch (error) {
      out.textContent = `request failed: ${error}`;
    }
  });
  return form;
}

function render(spec) {
  $('intro').textContent = spec.info.description || '';
  const byTag = new Map();
  for (const [path, item] of Object.entries(spec.paths)) {
    for (const method of ['get', 'post', 'put', 'patch', 'delete']) {
      const op = item[method];
      if (!op) continue;
      const tag = (op.tags && op.tags[0]) || 'other';
      if (!byTag.has(tag)) byTag.set(tag, []);
      byTag.get(tag).push([method, path, op]);
    }
  }
  const root = $('operations');
  for (const [tag, ops] of byTag) {
    root.append(el('h2', {}, tag));
    for (const [method, path, op] of ops) {
      const summary = el('summary', {}, el('span', { class: `method ${method}` }, method),
        el('span', { class: 'path' }, path), el('span', { class: 'summary' }, op.summary || ''));
      const parts = [];
      if (op.description) parts.push(el('p', {}, op.description));
      const scopes = (op.security || []).flatMap((s) => Object.values(s).flat());
      if (scopes.length) parts.push(el('p', {}, `Scope: ${[...new Set(scopes)].join(', ')}`));
      if (op.parameters && op.parameters.length) parts.push(parameterRows(op.parameters));
      if (op.requestBody) {
        const json = op.requestBody.content['application/json'];
        parts.push(el('p', {}, `Body: ${typeOf(json && json.schema)}. ${op.requestBody.description || ''}`));
      }
      parts.push(responseRows(op.responses));
      parts.push(tryIt(method, path, op, spec));
      root.append(el('details', { class: 'op', 'data-testid': `op-${method}-${path}` }, summary, el('div', { class: 'body' }, ...parts)));
    }
  }
  $('status').textContent = `${spec.info.title} ${spec.info.version}: ${root.querySelectorAll('details').length} operations (OpenAPI ${spec.openapi}).`;
}

fetch('/openapi.json')
  .then((r) => r.json())
  .then(render)
  .catch((error) => { $('status').textContent = `Could not load /openapi.json: ${error}`; });
