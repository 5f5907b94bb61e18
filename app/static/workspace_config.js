// The export config panel of the workspace page: config.yml loaded from and saved to the
// workspace, checked live as it is edited (POST /exports/config/check), regenerated from
// the selection, previewed, and exported (POST /exports).
"use strict";

const exportConfig = {
  /** The last config the server found valid: {workflows, pipelines, initial_variables}. */
  current: null,
  savedText: null,
  onChange: null,  // set by workspace.js: called with a valid config after an edit of the text
  timer: null,

  el: (id) => document.getElementById(id),

  init(path, onChange) {
    this.onChange = onChange;
    this.el("config-path").value = path;
    this.el("yaml").addEventListener("input", () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.checkText(), 250);
    });
    this.el("start-path").addEventListener("input", () => {
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.fromSelection(), 250);
    });
    this.el("load").addEventListener("click", () => this.load());
    this.el("defaults").addEventListener("click", () => this.defaults());
    this.el("save").addEventListener("click", () => this.save());
    this.el("export").addEventListener("click", () => this.startExport());
  },

  path() { return this.el("config-path").value.trim(); },

  /** `?path=...` for the chosen config file, or nothing for DARA's default one. */
  pathQuery() { return this.path() ? `?${new URLSearchParams({ path: this.path() })}` : ""; },

  message(text, error) {
    const slot = this.el("config-message");
    slot.textContent = text;
    slot.className = error ? "error" : "ok";
  },

  /** Show a ConfigView: its text (unless `keepText`), validity, problems and preview. */
  show(view, keepText) {
    if (!keepText) this.el("yaml").value = view.yaml;
    const status = this.el("config-status");
    const area = this.el("yaml");
    if (view.valid) {
      this.current = view.config;
      this.el("start-path").value = view.config.initial_variables.v_start_path;
      status.textContent = "✓ valid";
      status.className = "ok";
      area.classList.remove("invalid");
      this.preview(view.summary);
    } else {
      status.textContent = view.problems.map((p) => `${p.loc.join(".") || "config"}: ${p.msg}`).join("\n");
      status.className = "field-error";
      area.classList.add("invalid");
    }
    this.el("save").disabled = !view.valid;
    this.el("export").disabled = !view.valid || !view.summary || view.summary.total === 0;
  },

  preview(summary) {
    const box = this.el("preview");
    const rows = [
      ...summary.jobs.map((item) => ["job", item]),
      ...summary.pipelines.map((item) => ["pipeline", item]),
    ].map(([kind, item]) => dara.el("li", {}, `${kind} `, dara.el("b", { text: item.name }), ` (${item.id})`, item.export_libraries ? " + notebooks and libraries" : ""));
    box.replaceChildren(
      dara.el("p", { text: `${summary.total} item(s) into ${summary.start_path}` + (summary.inactive ? `; ${summary.inactive} inactive, skipped` : "") }),
      rows.length ? dara.el("ul", { id: "preview-items" }, rows) : dara.el("p", { class: "hint", text: "Select jobs or pipelines on the left." }),
    );
  },

  async load() {
    const result = await dara.call("GET", `/exports/config${this.pathQuery()}`);
    if (!result.ok) { this.message(`Cannot load: ${dara.detail(result)}`, true); return null; }
    this.savedText = result.body.exists ? result.body.yaml : null;
    this.el("config-path").value = result.body.path;
    this.show(result.body);
    this.message(result.body.exists ? `Loaded ${result.body.path}` : `No config at ${result.body.path} yet: a default one, not saved`, false);
    if (result.body.valid && this.onChange) this.onChange(result.body.config);
    return result.body;
  },

  async defaults() {
    const result = await dara.call("GET", `/exports/config/default${this.pathQuery()}`);
    if (!result.ok) { this.message(dara.detail(result), true); return; }
    this.show(result.body);
    this.message("Generated from defaults; not saved yet", false);
    if (this.onChange) this.onChange(result.body.config);
  },

  /** The editor's text changed: check it; a valid config updates the selection. */
  async checkText() {
    const result = await dara.call("POST", "/exports/config/check", { yaml: this.el("yaml").value });
    if (!result.ok) { this.message(dara.detail(result), true); return; }
    this.show(result.body, true);
    if (result.body.valid && this.onChange) this.onChange(result.body.config);
  },

  /** The selection (or start path) changed: the config it makes, as YAML, in the editor. */
  async fromSelection(workflows, pipelines) {
    const base = this.current || { workflows: [], pipelines: [], initial_variables: {} };
    const config = {
      workflows: workflows || base.workflows,
      pipelines: pipelines || base.pipelines,
      initial_variables: { ...base.initial_variables, v_start_path: this.el("start-path").value.trim() },
    };
    const result = await dara.call("POST", "/exports/config/check", { config });
    if (!result.ok) { this.message(dara.detail(result), true); return; }
    if (result.body.valid) this.show(result.body);
    else this.show({ ...result.body, yaml: this.el("yaml").value }, true);
  },

  async save() {
    const result = await dara.call("PUT", "/exports/config", { path: this.path() || null, yaml: this.el("yaml").value });
    if (!result.ok) {
      const detail = result.body && result.body.detail;
      this.message(Array.isArray(detail) ? `Not saved: ${detail.map((p) => `${(p.loc || []).join(".")}: ${p.msg}`).join("; ")}` : `Not saved: ${dara.detail(result)}`, true);
      return false;
    }
    this.savedText = result.body.yaml;
    this.message(`Saved to ${result.body.path}`, false);
    return true;
  },

  async startExport() {
    if (this.savedText !== this.el("yaml").value && !(await this.save())) return;
    this.el("export").disabled = true;
    const result = await dara.call("POST", "/exports", { path: this.path() || null });
    if (!result.ok) { this.el("export").disabled = false; this.message(`Not started: ${dara.detail(result)}`, true); return; }
    window.location.assign(result.body.page);
  },
};
