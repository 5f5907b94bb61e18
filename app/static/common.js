// Shared by the console's pages: calling DARA's API from a page, and reading its errors.
// Same-origin requests carry the page's credentials (the console session cookie, or
// the Databricks Apps proxy's identity), so no token ever sits in a script.
"use strict";

const dara = {
  /** fetch() a DARA URL as JSON; resolves {ok, status, body}; never throws for an HTTP error. */
  async call(method, url, body) {
    const init = { method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (body !== undefined) {
      init.headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(body);
    }
    let response;
    try {
      response = await fetch(url, init);
    } catch (error) {
      return { ok: false, status: 0, body: { detail: `DARA is unreachable: ${error}` } };
    }
    const text = await response.text();
    let parsed = null;
    try { parsed = text ? JSON.parse(text) : null; } catch (_) { parsed = { detail: text }; }
    return { ok: response.ok, status: response.status, body: parsed };
  },

  /** The text of an error answer: FastAPI's detail, a string or a list of problems. */
  detail(result) {
    const detail = result.body && result.body.detail;
    if (Array.isArray(detail)) return detail.map((d) => `${(d.loc || []).join(".")}: ${d.msg}`).join("; ");
    return typeof detail === "string" ? detail : `HTTP ${result.status}`;
  },

  /** An element with text (never HTML) and optional attributes and children. */
  el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === "class") node.className = value;
      else if (name === "text") node.textContent = value;
      else if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : value);
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  },
};
