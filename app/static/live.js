// Keeps a server-rendered section current without reloading the page: long-polls its
// data-live URL with the version it shows; the server answers with new HTML (already
// escaped, rendered by DARA) only when something changed, and says when it is final.
// Also wires the section's buttons (cancel, repair).
"use strict";

(function () {
  const section = document.getElementById("live");
  if (!section) return;

  // A button with data-action posts to it once confirmed (data-confirm) and shows a refusal
  // (data-refused says what did not happen) beside the buttons: cancel and repair.
  section.addEventListener("click", async (event) => {
    const button = event.target.closest("button[data-action]");
    if (!button) return;
    if (!window.confirm(button.dataset.confirm)) return;
    button.disabled = true;
    const result = await dara.call("POST", button.dataset.action);
    if (!result.ok) {
      button.disabled = false;
      const slot = section.querySelector(".cancel-error");
      if (slot) slot.textContent = ` ${button.dataset.refused}: ${dara.detail(result)}`;
      return;
    }
    poll(0);  // show the run as it is now at once
  });

  let inFlight = false;
  async function poll(wait) {
    const url = section.dataset.live;
    if (!url || inFlight) return;
    inFlight = true;
    try {
      const query = new URLSearchParams({ seen: section.dataset.version || "", wait: String(wait) });
      const response = await fetch(`${url}?${query}`, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (response.status === 200) {
        section.innerHTML = await response.text();
        section.dataset.version = response.headers.get("X-Dara-Version") || "";
        section.dataset.updated = String(Date.now());
        if (response.headers.get("X-Dara-Final") === "true") {
          delete section.dataset.live;
          section.dataset.final = "true";
        }
      } else if (response.status !== 204) {
        await new Promise((resolve) => setTimeout(resolve, 3000));  // an error: back off, then retry
      }
    } catch (_) {
      await new Promise((resolve) => setTimeout(resolve, 3000));  // DARA restarting: retry
    } finally {
      inFlight = false;
    }
    if (section.dataset.live) setTimeout(() => poll(5), 50);
  }
  if (section.dataset.live) poll(5);
})();
