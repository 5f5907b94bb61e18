// The start page: pick a pipeline (kept in the URL), fill the form made from its schema,
// POST /runs, and show the 422's problems beside their fields; then go to the run's page.
"use strict";

(async function () {
  const form = document.getElementById("start");
  const select = document.getElementById("pipeline");
  const fields = document.getElementById("params");
  const formError = document.getElementById("form-error");
  const description = document.getElementById("description");

  const listed = await dara.call("GET", "/pipelines");
  if (!listed.ok) { formError.textContent = `Cannot list pipelines: ${dara.detail(listed)}`; return; }
  const pipelines = listed.body.filter((p) => !p.server_only);
  for (const p of pipelines) select.append(dara.el("option", { value: p.name, text: p.name }));
  const url = new URL(window.location.href);
  const wanted = url.searchParams.get("pipeline");
  if (wanted && pipelines.some((p) => p.name === wanted)) select.value = wanted;

  function show() {
    const pipeline = pipelines.find((p) => p.name === select.value);
    description.textContent = pipeline ? pipeline.description : "";
    schemaForm.render(fields, pipeline ? pipeline.params : {}, {});
    clearProblems();
    const next = new URL(window.location.href);
    next.searchParams.set("pipeline", select.value);
    history.replaceState(null, "", next);
  }

  function clearProblems() {
    formError.textContent = "";
    for (const slot of form.querySelectorAll(".field-error")) slot.textContent = "";
    for (const input of form.querySelectorAll(".invalid")) input.classList.remove("invalid");
  }

  function showProblems(problems) {
    let unplaced = "";
    for (const [name, message] of Object.entries(problems)) {
      const slot = form.querySelector(`.field-error[data-for="${CSS.escape(name)}"]`);
      if (!slot) { unplaced += `${name}: ${message}. `; continue; }
      slot.textContent = message;
      const input = form.querySelector(`[data-name="${CSS.escape(name)}"]`) || document.getElementById("run-id");
      if (input) input.classList.add("invalid");
    }
    return unplaced;
  }

  select.addEventListener("change", show);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    clearProblems();
    const { values, problems } = schemaForm.read(fields);
    if (Object.keys(problems).length) { formError.textContent = showProblems(problems) || "Fix the fields marked below."; return; }
    const id = document.getElementById("run-id").value.trim();
    const button = document.getElementById("submit");
    button.disabled = true;
    const result = await dara.call("POST", "/runs", { pipeline: select.value, params: values, ...(id ? { id } : {}) });
    button.disabled = false;
    if (result.ok) { window.location.assign(`/ui/runs/${encodeURIComponent(result.body.id)}`); return; }
    if (result.status === 422) {
      const { found, rest } = schemaForm.problemsOf(result.body && result.body.detail);
      const unplaced = showProblems(found);
      formError.textContent = `${rest} ${unplaced}`.trim() || "Fix the fields marked below.";
      return;
    }
    formError.textContent = dara.detail(result);
  });
  show();
})();
