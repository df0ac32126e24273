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
    let waitSeconds = 0;
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
      if (response.status === 429 || response.status === 503) {
        // Slowed down after wrong passwords (429) or too many log-ins at once (503): nobody is
        // locked out, the node says how long to wait and the button stays off until then.
        waitSeconds = detail.retry_after_s || Number(response.headers.get("retry-after")) || 1;
        showError(response.status === 429 ? "error.throttled" : "error.login_busy", { seconds: waitSeconds });
      } else if (response.status === 403) {
        showError("error.csrf_login");  // the login page was open too long: fetch a fresh one
        window.setTimeout(() => window.location.reload(), 1500);
      } else if (detail.code && detail.code !== "bad_credentials" && window.SGI18N.has("error." + detail.code)) {
        showError("error." + detail.code);  // e.g. a request too large
      } else {
        showError("error.bad_credentials");
      }
      form.password.value = "";
      form.password.focus();
    } catch (e) {
      showError("error.network");
    }
    if (waitSeconds > 0) window.setTimeout(() => { button.disabled = false; }, waitSeconds * 1000);
    else button.disabled = false;
  });
})();
