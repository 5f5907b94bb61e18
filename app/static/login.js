// Signs in with the token from a script: a plain form post from a page with
// "Referrer-Policy: no-referrer" carries "Origin: null", which DARA refuses as cross-site;
// fetch() sends the page's real origin. The answer sets the session cookie.
"use strict";

(function () {
  const form = document.getElementById("login");
  if (!form) return;
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const body = new URLSearchParams(new FormData(form));
    const response = await fetch(form.action, { method: "POST", body, credentials: "same-origin", redirect: "manual" });
    if (response.type === "opaqueredirect" || response.ok) {
      window.location.assign(body.get("next") || "/ui");
      return;
    }
    const slot = document.getElementById("login-error");
    slot.textContent = response.status === 401 ? "That is not DARA_API_TOKEN." : `Not signed in (HTTP ${response.status}).`;
    form.elements.token.value = "";
  });
})();
