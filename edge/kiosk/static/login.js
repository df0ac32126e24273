// The login form: posts the name and password as JSON with the page's CSRF token.
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
      const response = await fetch("/api/login", {
        method: "POST",
        credentials: "same-origin",
        headers: { "content-type": "application/json", "x-csrf-token": csrf },
        body: JSON.stringify({ username: form.username.value.trim(), password: form.password.value }),
      });
      if (response.ok) {
        window.location.assign("/");
        return;
      }
      let detail = {};
      try { detail = (await response.json()).detail || {}; } catch (e) { /* not JSON */ }
      if (response.status === 429) {
        showError("error.locked", { minutes: Math.ceil((detail.retry_after_s || 60) / 60) });
      } else if (response.status === 403) {
        showError("error.csrf_login");  // the login page was open too long: fetch a fresh one
        window.setTimeout(() => window.location.reload(), 1500);
      } else {
        showError("error.bad_credentials");
      }
      form.password.value = "";
      form.password.focus();
    } catch (e) {
      showError("error.network");
    } finally {
      button.disabled = false;
    }
  });
})();
