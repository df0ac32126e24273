// Messages and formatting for the kiosk pages. The catalogues come with the page (no network);
// every visible word is looked up here by key, so the language switches without a reload.
(function () {
  "use strict";
  const all = JSON.parse(document.getElementById("sg-i18n").textContent);
  let lang = all[document.documentElement.lang] ? document.documentElement.lang : "vi";
  const listeners = [];

  function t(key, params) {
    let text = (all[lang] && all[lang][key]) ?? all.en[key] ?? key;
    if (params) {
      for (const [name, value] of Object.entries(params)) {
        text = text.split("{" + name + "}").join(value === null || value === undefined ? "" : String(value));
      }
    }
    return text;
  }

  function has(key) {
    return Boolean((all[lang] && key in all[lang]) || key in all.en);
  }

  function apply(root) {
    (root || document).querySelectorAll("[data-i18n]").forEach((el) => { el.textContent = t(el.dataset.i18n); });
    (root || document).querySelectorAll("[data-i18n-placeholder]").forEach((el) => {
      el.placeholder = t(el.dataset.i18nPlaceholder);
    });
    // Names from the site file (gate, lanes) in both languages: `name_vi` where the site gives one.
    (root || document).querySelectorAll("[data-name-en]").forEach((el) => {
      el.textContent = name(el.dataset.nameEn, el.dataset.nameVi);
    });
    document.documentElement.lang = lang;
    document.querySelectorAll("button.lang").forEach((button) => {
      const active = button.dataset.lang === lang;
      button.classList.toggle("active", active);
      button.setAttribute("aria-pressed", String(active));
    });
  }

  function name(en, vi) { return (lang === "vi" && vi) ? vi : (en || vi || ""); }

  function setLang(code) {
    if (!all[code]) return;
    lang = code;
    document.cookie = "sg_lang=" + code + "; path=/; max-age=31536000; SameSite=Strict";
    apply();
    listeners.forEach((fn) => fn(code));
  }

  function locale() { return lang === "vi" ? "vi-VN" : "en-GB"; }

  function time(epochSeconds, withDate) {
    if (epochSeconds === null || epochSeconds === undefined) return "—";
    const options = { hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false };
    if (withDate) Object.assign(options, { day: "2-digit", month: "2-digit", year: "numeric" });
    return new Intl.DateTimeFormat(locale(), options).format(new Date(epochSeconds * 1000));
  }

  function duration(seconds) {
    if (seconds === null || seconds === undefined) return "—";
    const s = Math.max(0, Math.round(seconds));
    if (s < 60) return t("unit.s", { n: s });
    if (s < 3600) return t("unit.min", { n: Math.floor(s / 60) });
    if (s < 86400) return t("unit.h_min", { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
    return t("unit.d_h", { d: Math.floor(s / 86400), h: Math.floor((s % 86400) / 3600) });
  }

  function number(value, digits) {
    if (value === null || value === undefined) return "—";
    return new Intl.NumberFormat(locale(), { maximumFractionDigits: digits ?? 0 }).format(value);
  }

  document.querySelectorAll("button.lang").forEach((button) => {
    button.addEventListener("click", () => setLang(button.dataset.lang));
  });
  apply();

  window.SGI18N = {
    t, has, apply, setLang, time, duration, number, locale, name,
    onChange: (fn) => listeners.push(fn),
    get lang() { return lang; },
  };
})();
