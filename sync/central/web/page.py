"""Central page's message catalogues (i18n/<lang>.json) and template filler, in the kiosk's conventions.

Templates hold no user-visible words: `{{t:key}}` is the message for the chosen language (HTML-escaped), elements
carry `data-i18n="key"` so the page switches language without a reload, and the script reads the whole catalogue
from the page. The language choice (cookie `sg_lang`, then the browser's) is the kiosk's (edge/kiosk/i18n.py).
"""

from __future__ import annotations

import html
import json
import re
from functools import cache
from pathlib import Path

from edge.kiosk.i18n import LANGUAGES, choose_language, script_json

HERE = Path(__file__).parent
I18N_DIR, TEMPLATE_DIR, STATIC_DIR = HERE / "i18n", HERE / "templates", HERE / "static"
_PLACEHOLDER = re.compile(r"\{\{\s*(t:)?([A-Za-z0-9_.\-]+)\s*\}\}")

__all__ = ["LANGUAGES", "catalogue", "choose_language", "render"]


@cache
def catalogue(lang: str) -> dict[str, str]:
    """The messages of one language (flat: dotted keys -> text)."""
    if lang not in LANGUAGES:
        raise KeyError(lang)
    return json.loads((I18N_DIR / f"{lang}.json").read_text(encoding="utf-8"))


@cache
def _template(name: str) -> str:
    return (TEMPLATE_DIR / name).read_text(encoding="utf-8")


def render(name: str, lang: str, values: dict[str, str] | None = None) -> str:
    """Fill a template: {{t:key}} from the catalogue, {{name}} from values (HTML-escaped; `i18n_json` is added)."""
    values = {"lang": lang, "i18n_json": script_json({code: catalogue(code) for code in LANGUAGES}), **(values or {})}
    messages = catalogue(lang)
    english = catalogue("en")

    def fill(match: re.Match) -> str:
        is_message, key = match.group(1), match.group(2)
        if is_message:
            return html.escape(messages.get(key) or english.get(key) or key)
        value = values[key]
        return value if key.endswith("_json") else html.escape(value)

    return _PLACEHOLDER.sub(fill, _template(name))
