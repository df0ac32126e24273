"""Message catalogues (i18n/<lang>.json) and the tiny template filler for the kiosk pages.

Templates hold no user-visible words: `{{t:key}}` is replaced by the message for the chosen
language (HTML-escaped), and elements carry `data-i18n="key"` so the page can switch language
without a reload. The board's script reads the whole catalogue from the page.
"""

from __future__ import annotations

import html
import json
import re
from functools import cache
from pathlib import Path
from typing import Any

I18N_DIR = Path(__file__).parent / "i18n"
TEMPLATE_DIR = Path(__file__).parent / "templates"
LANGUAGES = ("vi", "en")
DEFAULT_LANGUAGE = "vi"

_PLACEHOLDER = re.compile(r"\{\{\s*(t:)?([A-Za-z0-9_.\-]+)\s*\}\}")


@cache
def catalogue(lang: str) -> dict[str, str]:
    """The messages of one language (flat: dotted keys → text)."""
    if lang not in LANGUAGES:
        raise KeyError(lang)
    return json.loads((I18N_DIR / f"{lang}.json").read_text(encoding="utf-8"))


def choose_language(cookie: str | None, accept_language: str | None) -> str:
    """The cookie's language, else the first supported one the browser asks for, else Vietnamese."""
    if cookie in LANGUAGES:
        return cookie
    for part in (accept_language or "").split(","):
        code = part.split(";")[0].strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return DEFAULT_LANGUAGE


def message(lang: str, key: str, **params: Any) -> str:
    text = catalogue(lang).get(key) or catalogue("en").get(key) or key
    for name, value in params.items():
        text = text.replace("{" + name + "}", str(value))
    return text


def script_json(value: Any) -> str:
    """JSON safe to put inside <script type="application/json">."""
    return json.dumps(value, ensure_ascii=False).replace("</", "<\\/")


@cache
def _template(name: str) -> str:
    return (TEMPLATE_DIR / name).read_text(encoding="utf-8")


def render(name: str, lang: str, values: dict[str, str]) -> str:
    """Fill a template: {{t:key}} from the catalogue, {{name}} from values (both HTML-escaped,
    except values whose name ends in _json, which must already be safe for a script element)."""

    def fill(match: re.Match) -> str:
        is_message, key = match.group(1), match.group(2)
        if is_message:
            return html.escape(message(lang, key))
        value = values[key]
        return value if key.endswith("_json") else html.escape(value)

    return _PLACEHOLDER.sub(fill, _template(name))
