// The log-in form: exchanges the operator's token for a session cookie (JSON, with the page's CSRF token).
(function () {
  "use strict";
  const { t } = window.SGI18N;
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  const csrf = document.querySelector('meta[name="sg-login-csrf"]').content;
  let lastError = null;

  function showError(key, params) {
    lastError = key ? [key, params] : null;
    error.textContent = key ? t(key, params) : "";
  }
  window.SGI18N.onChange(() => { if (lastError) showError(lastError[0], lastError[1]); });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    showError(null);
    const button = document.getElementById("login-submit");
    button.disabled = true;
    try {
      const response = await fetch("/api/v1/session", {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": csrf },
        body: JSON.stringify({ token: form.token.value.trim() }),
      });
      if (response.ok) {
        form.token.value = "";
        window.location.assign("/");
        return;
      }
      let detail = {};
      try { detail = (await response.json()).detail || {}; } catch (e) { /* not JSON */ }
      const code = detail.code || "";
      if (code === "CSRF") {
        showError("error.CSRF");
        window.setTimeout(() => window.location.reload(), 1500);
      } else if (window.SGI18N.has("error." + code)) {
        showError("error." + code, { seconds: detail.retry_after_s });
      } else {
        showError("error.generic", { status: response.status });
      }
      form.token.select();
    } catch (e) {
      showError("error.network");
    }
    button.disabled = false;
  });
})();
