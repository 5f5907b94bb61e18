// The workspace browser: the workspace's jobs and Lakeflow pipelines, searched, filtered
// and paged by the server (GET /workspace/...), with a detail view, and a selection --
// each item with an "export libraries" toggle -- that makes the export config.
// Everything a person set (tab, search, filters, page, open item, selection, config
// file) lives in the URL, so a reload or a shared link shows the same.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const url = new URL(window.location.href);
  const state = {
    kind: url.searchParams.get("kind") === "pipelines" ? "pipelines" : "jobs",
    q: url.searchParams.get("q") || "",
    creator: url.searchParams.get("creator") || "",
    schedule: url.searchParams.get("schedule") || "any",
    tag: url.searchParams.get("tag") || "",
    state: url.searchParams.get("state") || "",
    cursor: Number(url.searchParams.get("cursor") || 0) || 0,
    open: url.searchParams.get("open") || "",
    path: url.searchParams.get("path") || "",
  };
  const history_ = [];  // cursors of the pages before this one, for "Previous"
  /** key "job:ID" / "pipeline:ID" -> {kind, id, name, lib, active} */
  const selection = new Map();
  const fromUrl = url.searchParams.get("sel");

  function parseSelection(text) {
    for (const part of text.split(",").filter(Boolean)) {
      const [kind, id, lib] = part.split(":");
      if (!id || (kind !== "j" && kind !== "p")) continue;
      const full = kind === "j" ? "job" : "pipeline";
      selection.set(`${full}:${id}`, { kind: full, id, name: "", lib: lib === "1", active: true });
    }
  }

  function writeUrl() {
    const next = new URL(window.location.href);
    const params = { kind: state.kind, q: state.q, creator: state.creator, cursor: state.cursor || "", open: state.open, path: state.path };
    if (state.kind === "jobs") Object.assign(params, { schedule: state.schedule === "any" ? "" : state.schedule, tag: state.tag, state: "" });
    else Object.assign(params, { state: state.state, schedule: "", tag: "" });
    params.sel = [...selection.values()].map((s) => `${s.kind === "job" ? "j" : "p"}:${s.id}:${s.lib ? 1 : 0}`).join(",");
    for (const [name, value] of Object.entries(params)) {
      if (value === "" || value === undefined) next.searchParams.delete(name);
      else next.searchParams.set(name, String(value));
    }
    history.replaceState(null, "", next);
  }

  // -- the listing ------------------------------------------------------------------

  function showFilters() {
    for (const tab of document.querySelectorAll(".tabs a")) tab.classList.toggle("current", tab.dataset.kind === state.kind);
    for (const field of document.querySelectorAll("#filters [data-for]")) field.hidden = field.dataset.for !== state.kind;
    $("q").value = state.q;
    $("creator").value = state.creator;
    $("schedule").value = state.schedule;
    $("tag").value = state.tag;
    $("state").value = state.state;
  }

  let loading = 0;
  async function list() {
    const ticket = ++loading;
    const query = new URLSearchParams({ q: state.q, creator: state.creator, cursor: String(state.cursor), limit: "10" });
    if (state.kind === "jobs") { query.set("schedule", state.schedule); query.set("tag", state.tag); } else { query.set("state", state.state); }
    const result = await dara.call("GET", `/workspace/${state.kind}?${query}`);
    if (ticket !== loading) return;  // a newer search is on its way
    $("browse-error").textContent = result.ok ? "" : dara.detail(result);
    if (!result.ok) return;
    render(result.body);
  }

  function render(page) {
    const jobs = state.kind === "jobs";
    $("items").tHead.replaceChildren(dara.el("tr", {},
      dara.el("th", { text: "select" }), dara.el("th", { text: "name" }), dara.el("th", { text: "creator" }),
      dara.el("th", { text: jobs ? "schedule" : "state" }), dara.el("th", { text: "export libraries" }), dara.el("th", {})));
    const kind = jobs ? "job" : "pipeline";
    const rows = page.items.map((item) => {
      const key = `${kind}:${item.id}`;
      const chosen = selection.get(key);
      if (chosen && !chosen.name) chosen.name = item.name;
      const box = dara.el("input", { type: "checkbox", class: "pick", "aria-label": `select ${item.name}`, checked: Boolean(chosen) });
      const lib = dara.el("input", { type: "checkbox", class: "lib", "aria-label": `export libraries of ${item.name}`, checked: Boolean(chosen && chosen.lib), disabled: !chosen });
      box.addEventListener("change", () => {
        if (box.checked) selection.set(key, { kind, id: item.id, name: item.name, lib: lib.checked, active: true });
        else selection.delete(key);
        lib.disabled = !box.checked;
        selectionChanged();
      });
      lib.addEventListener("change", () => {
        const entry = selection.get(key);
        if (entry) { entry.lib = lib.checked; selectionChanged(); }
      });
      const more = dara.el("button", { type: "button", class: "open", text: "details" });
      more.addEventListener("click", () => { state.open = item.id; writeUrl(); detail(); });
      const info = jobs ? (item.schedule || "—") + (item.paused ? " (paused)" : "") : item.state || "—";
      return dara.el("tr", { "data-id": item.id },
        dara.el("td", {}, box), dara.el("td", {}, dara.el("b", { text: item.name }), dara.el("br"), dara.el("code", { text: item.id })),
        dara.el("td", { text: item.creator || "" }), dara.el("td", { text: info }), dara.el("td", {}, lib), dara.el("td", {}, more));
    });
    if (!rows.length) rows.push(dara.el("tr", {}, dara.el("td", { colspan: "6", text: state.q ? "Nothing matches." : "Nothing here." })));
    $("items").tBodies[0].replaceChildren(...rows);
    $("prev").disabled = state.cursor === 0;
    $("next").disabled = page.next_cursor === null;
    $("next").dataset.cursor = page.next_cursor === null ? "" : String(page.next_cursor);
    $("page-info").textContent = ` items ${page.items.length ? state.cursor + 1 : 0}–${state.cursor + page.items.length} `;
  }

  async function detail() {
    const box = $("detail");
    if (!state.open) { box.hidden = true; return; }
    const result = await dara.call("GET", `/workspace/${state.kind}/${encodeURIComponent(state.open)}`);
    box.hidden = false;
    const close = dara.el("button", { type: "button", text: "close" });
    close.addEventListener("click", () => { state.open = ""; writeUrl(); detail(); });
    if (!result.ok) { box.replaceChildren(dara.el("p", { class: "error", text: dara.detail(result) }), close); return; }
    const d = result.body;
    const facts = [["id", d.id], ["creator", d.creator || "—"]];
    const parts = [];
    if (state.kind === "jobs") {
      facts.push(["schedule", d.schedule ? `${d.schedule}${d.paused ? " (paused)" : ""}` : "none"]);
      facts.push(["tags", Object.entries(d.tags).map(([k, v]) => `${k}=${v}`).join(", ") || "none"]);
      parts.push(dara.el("h4", { text: "Tasks" }), dara.el("table", { class: "tasks" },
        dara.el("tr", {}, ["task", "kind", "runs", "depends on", "libraries"].map((h) => dara.el("th", { text: h }))),
        d.tasks.map((t) => dara.el("tr", {}, [t.key, t.kind, t.target || "", t.depends_on.join(", "), t.libraries.join(", ")].map((v) => dara.el("td", { text: v }))))));
      parts.push(dara.el("h4", { text: "Last runs" }), d.last_runs.length
        ? dara.el("ul", { class: "runs" }, d.last_runs.map((r) => dara.el("li", {}, dara.el("a", { href: r.link, text: `run ${r.run_id}` }), " ",
          dara.el("span", { class: `s ${r.state.toLowerCase()}`, text: r.state }), r.started ? ` ${r.started.replace("T", " ").slice(0, 19)}` : "")))
        : dara.el("p", { class: "hint", text: "No runs yet." }));
    } else {
      facts.push(["state", d.state || "—"], ["catalog", d.catalog || "—"], ["target schema", d.target || "—"],
        ["continuous", d.continuous ? "yes" : "no"], ["development", d.development ? "yes" : "no"]);
      parts.push(dara.el("h4", { text: "Source libraries" }), dara.el("ul", {}, d.libraries.map((path) => dara.el("li", {}, dara.el("code", { text: path })))));
    }
    box.replaceChildren(dara.el("h3", { text: d.name }),
      dara.el("table", { class: "facts" }, facts.map(([k, v]) => dara.el("tr", {}, dara.el("th", { text: k }), dara.el("td", { text: v })))),
      ...parts, close);
  }

  // -- selection <-> config ---------------------------------------------------------

  function selectionChanged() {
    writeUrl();
    const previous = exportConfig.current || { workflows: [], pipelines: [] };
    const active = new Map([...previous.workflows.map((w) => [`job:${w.job_id}`, w.is_active]), ...previous.pipelines.map((p) => [`pipeline:${p.pipeline_id}`, p.is_active])]);
    const workflows = [];
    const pipelines = [];
    for (const [key, s] of selection) {
      const isActive = active.has(key) ? active.get(key) : true;
      if (s.kind === "job") workflows.push({ job_name: s.name || `job ${s.id}`, job_id: Number(s.id), is_existing: true, is_active: isActive, export_libraries: s.lib });
      else pipelines.push({ pipeline_name: s.name || s.id, pipeline_id: s.id, is_existing: true, is_active: isActive, export_libraries: s.lib });
    }
    exportConfig.fromSelection(workflows, pipelines);
  }

  /** A config (loaded, generated, or edited as text) becomes the selection. */
  function configChanged(config) {
    selection.clear();
    for (const w of config.workflows) selection.set(`job:${w.job_id}`, { kind: "job", id: String(w.job_id), name: w.job_name, lib: w.export_libraries, active: w.is_active });
    for (const p of config.pipelines) selection.set(`pipeline:${p.pipeline_id}`, { kind: "pipeline", id: p.pipeline_id, name: p.pipeline_name, lib: p.export_libraries, active: p.is_active });
    writeUrl();
    syncBoxes();
  }

  function syncBoxes() {
    const kind = state.kind === "jobs" ? "job" : "pipeline";
    for (const row of $("items").tBodies[0].rows) {
      const chosen = selection.get(`${kind}:${row.dataset.id}`);
      const box = row.querySelector(".pick");
      const lib = row.querySelector(".lib");
      if (!box) continue;
      box.checked = Boolean(chosen);
      lib.checked = Boolean(chosen && chosen.lib);
      lib.disabled = !chosen;
    }
  }

  /** Names of selected items the URL named but no page or config has shown yet. */
  async function nameSelection() {
    for (const s of selection.values()) {
      if (s.name) continue;
      const result = await dara.call("GET", `/workspace/${s.kind === "job" ? "jobs" : "pipelines"}/${encodeURIComponent(s.id)}`);
      if (result.ok) s.name = result.body.name;
    }
  }

  // -- wiring -------------------------------------------------------------------------

  let typing = null;
  function refilter() {
    state.q = $("q").value.trim();
    state.creator = $("creator").value.trim();
    state.schedule = $("schedule").value;
    state.tag = $("tag").value.trim();
    state.state = $("state").value;
    state.cursor = 0;
    history_.length = 0;
    writeUrl();
    list();
  }
  $("filters").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(refilter, 200); });
  $("filters").addEventListener("submit", (event) => { event.preventDefault(); refilter(); });
  for (const tab of document.querySelectorAll(".tabs a")) {
    tab.addEventListener("click", (event) => {
      event.preventDefault();
      state.kind = tab.dataset.kind;
      state.cursor = 0;
      state.open = "";
      history_.length = 0;
      showFilters();
      writeUrl();
      list();
      detail();
    });
  }
  $("next").addEventListener("click", () => {
    if (!$("next").dataset.cursor) return;
    history_.push(state.cursor);
    state.cursor = Number($("next").dataset.cursor);
    writeUrl();
    list();
  });
  $("prev").addEventListener("click", () => {
    state.cursor = history_.length ? history_.pop() : Math.max(0, state.cursor - 10);
    writeUrl();
    list();
  });
  $("config-path").addEventListener("change", () => { state.path = exportConfig.path(); writeUrl(); });

  (async function start() {
    showFilters();
    exportConfig.init(state.path || "", configChanged);
    const loaded = await exportConfig.load();
    if (!state.path && loaded) $("config-path").value = loaded.path;
    if (fromUrl !== null) {  // the URL's selection wins over the saved one: it is what the person last saw
      const names = new Map([...selection].map(([key, s]) => [key, s.name]));
      selection.clear();
      parseSelection(fromUrl);
      for (const [key, s] of selection) s.name = names.get(key) || "";
      await nameSelection();
      selectionChanged();
    }
    await list();
    await detail();
  })();
})();
