// A form made from a JSON schema (as pydantic writes it: properties, required, $defs,
// anyOf with null for optional values), and the values read back out of it.
// Plain inputs for strings, numbers, booleans and enums; JSON text for anything nested.
"use strict";

const schemaForm = {
  /** The schema of one property, with $ref resolved and "X or null" reduced to X. */
  resolve(schema, root) {
    let node = schema || {};
    if (node.$ref && root && root.$defs) node = root.$defs[node.$ref.split("/").pop()] || {};
    if (Array.isArray(node.anyOf)) {
      const options = node.anyOf.filter((option) => option.type !== "null");
      if (options.length === 1) {
        return { ...this.resolve(options[0], root), nullable: true, default: node.default, title: node.title, description: node.description };
      }
    }
    return node;
  },

  kind(node) {
    if (Array.isArray(node.enum)) return "enum";
    if (node.type === "boolean") return "boolean";
    if (node.type === "integer" || node.type === "number") return "number";
    if (node.type === "string") return "string";
    return "json";
  },

  /** Fill `container` with one field per property of `schema`. */
  render(container, schema, values) {
    container.replaceChildren();
    const required = new Set(schema.required || []);
    const properties = schema.properties || {};
    if (!Object.keys(properties).length) container.append(dara.el("p", { class: "hint", text: "No parameters." }));
    for (const [name, raw] of Object.entries(properties)) {
      const node = this.resolve(raw, schema);
      const kind = this.kind(node);
      const id = `param-${name}`;
      const given = values && name in values ? values[name] : node.default;
      let input;
      if (kind === "boolean") {
        input = dara.el("input", { type: "checkbox", id, checked: given === true });
      } else if (kind === "enum") {
        input = dara.el("select", { id }, node.enum.map((option) => dara.el("option", { value: String(option), text: String(option), selected: option === given })));
      } else if (kind === "number") {
        input = dara.el("input", { type: "number", id, step: node.type === "integer" ? "1" : "any", value: given ?? "" });
      } else if (kind === "string") {
        input = dara.el("input", { type: "text", id, size: "50", value: given ?? "" });
      } else {
        input = dara.el("textarea", { id, rows: "3", placeholder: "JSON", text: given === undefined || given === null ? "" : JSON.stringify(given) });
      }
      input.dataset.name = name;
      input.dataset.kind = kind;
      input.dataset.integer = node.type === "integer" ? "1" : "";
      input.dataset.nullable = node.nullable || !required.has(name) ? "1" : "";
      const mark = required.has(name) ? " *" : "";
      container.append(
        dara.el("div", { class: "field" },
          dara.el("label", { for: id, text: `${node.title || name}${mark}` }),
          input,
          node.description ? dara.el("span", { class: "hint", text: ` ${node.description}` }) : null,
          dara.el("span", { class: "field-error", "data-for": name }),
        ),
      );
    }
  },

  /** {values, problems}: what the form holds, and what cannot even be sent. */
  read(container) {
    const values = {};
    const problems = {};
    for (const input of container.querySelectorAll("[data-name]")) {
      const { name, kind } = input.dataset;
      if (kind === "boolean") { values[name] = input.checked; continue; }
      const text = input.value.trim();
      if (text === "") { if (!input.dataset.nullable) problems[name] = "required"; continue; }
      if (kind === "number") {
        const number = Number(text);
        if (!Number.isFinite(number) || (input.dataset.integer && !Number.isInteger(number))) problems[name] = "not a number";
        else values[name] = number;
      } else if (kind === "json") {
        try { values[name] = JSON.parse(text); } catch (_) { problems[name] = "not valid JSON"; }
      } else {
        values[name] = text;
      }
    }
    return { values, problems };
  },

  /** Field name -> message, from a 422's detail: FastAPI's list, or DARA's
   *  "bad params for <pipeline>: <field>: <message>; <field>: <message>". */
  problemsOf(detail) {
    const found = {};
    let rest = "";
    if (Array.isArray(detail)) {
      for (const item of detail) {
        const loc = (item.loc || []).filter((part) => part !== "body");
        const field = loc[0] === "params" ? String(loc[1] ?? "params") : String(loc[0] ?? "");
        found[field] = item.msg;
      }
      return { found, rest };
    }
    const text = String(detail || "");
    const match = /^bad params for [^:]+: (.*)$/s.exec(text);
    if (!match) return { found, rest: text };
    for (const part of match[1].split("; ")) {
      const at = part.indexOf(": ");
      if (at < 0) { rest += part; continue; }
      found[part.slice(0, at).split(".")[0]] = part.slice(at + 2);
    }
    return { found, rest };
  },
};
