"""Both languages say everything: catalogues match, every reason code has words, no text in templates."""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser

import pytest

from edge.kiosk import i18n
from edge.rules import REASONS

STATIC = i18n.TEMPLATE_DIR.parent / "static"


def test_catalogues_have_the_same_keys_and_no_empty_message():
    en, vi = i18n.catalogue("en"), i18n.catalogue("vi")
    assert set(en) == set(vi)
    assert all(text.strip() for text in [*en.values(), *vi.values()])
    for key in en:  # the same placeholders in both languages
        assert set(re.findall(r"\{(\w+)\}", en[key])) == set(re.findall(r"\{(\w+)\}", vi[key])), key


@pytest.mark.parametrize("lang", i18n.LANGUAGES)
def test_every_reason_code_has_plain_words(lang: str):
    messages = i18n.catalogue(lang)
    missing = [code for code in REASONS if f"reason.{code}" not in messages]
    assert not missing, f"{lang}: add reason.<CODE> texts to edge/kiosk/i18n/{lang}.json for {missing}"


def test_vietnamese_is_really_vietnamese():
    vi, en = i18n.catalogue("vi"), i18n.catalogue("en")
    alike = {"history.officer_action", "lang.vi", "lang.en"}  # a name and a verb, or a language's own name
    same = [k for k in vi if vi[k] == en[k] and re.search(r"[a-z]{4,}", vi[k]) and k not in alike]
    assert not same, f"untranslated: {same}"
    assert vi["reason.SEAL_MISMATCH"] == "Đọc được niêm phong không có trong tờ khai"


def test_every_key_the_page_uses_exists():
    sources = "".join(p.read_text(encoding="utf-8") for p in [*STATIC.glob("*.js"), *i18n.TEMPLATE_DIR.glob("*.html")])
    used = set(re.findall(r"""\bt\(\s*"([a-z_]+\.[A-Za-z_.]+)\"""", sources))
    used |= set(re.findall(r'data-i18n(?:-placeholder)?="([^"]+)"', sources))
    used |= set(re.findall(r"\{\{t:([A-Za-z0-9_.\-]+)\}\}", sources))
    prefixes = set(re.findall(r"""\btr\(\s*"([a-z_]+)\"""", sources))
    assert len(used) > 100 and {"reason", "state", "action", "seal"} <= prefixes
    missing = sorted(k for k in used if k not in i18n.catalogue("en") or k not in i18n.catalogue("vi"))
    assert not missing, missing


class _TextFinder(HTMLParser):
    """Collects text a person would read that does not come from a placeholder."""

    VISIBLE_ATTRIBUTES = {"placeholder", "title", "alt", "aria-label"}

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        for name, value in attrs:
            if name in self.VISIBLE_ATTRIBUTES and value:
                self._check(value)

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1

    def handle_data(self, data):
        if not self._skip:
            self._check(data)

    def _check(self, text: str) -> None:
        rest = re.sub(r"\{\{[^}]*\}\}", "", html.unescape(text))
        if re.search(r"[^\W\d_]", rest):
            self.found.append(rest.strip())


@pytest.mark.parametrize("template", ["lanes.html", "login.html"])
def test_no_words_are_hard_coded_in_templates(template: str):
    finder = _TextFinder()
    finder.feed((i18n.TEMPLATE_DIR / template).read_text(encoding="utf-8"))
    assert finder.found == []


def test_scripts_hold_no_sentences():
    # Visible words come from t(); a sentence as a string literal in the page's code is a leak.
    for path in STATIC.glob("*.js"):
        code = re.sub(r"//.*", "", path.read_text(encoding="utf-8"))
        literals = [s for line in code.splitlines() for s in re.findall(r'"([^"\\]*)"', line)]
        sentences = [s for s in literals if re.search(r"[A-Z][a-z]+ [a-z]+|[a-z]{3,} [a-z]{3,}[.:!?]", s)]
        assert not sentences, (path.name, sentences)


def test_language_is_chosen_by_cookie_then_browser_then_vietnamese():
    assert i18n.choose_language("en", "vi-VN") == "en"
    assert i18n.choose_language(None, "fr-FR,en;q=0.8") == "en"
    assert i18n.choose_language("de", None) == "vi"
    page = i18n.render("login.html", "vi", {"lang": "vi", "gate_name": "<b>Huu Nghi</b>", "login_csrf": "t",
                                            "gate_name_en": "<b>Huu Nghi</b>", "gate_name_vi": "\"Hữu Nghị",
                                            "i18n_json": i18n.script_json({"x": "</script>"})})
    assert "Đăng nhập" in page and "&lt;b&gt;Huu Nghi" in page and "<\\/script>" in page
    assert 'data-name-vi="&quot;Hữu Nghị"' in page  # names in attributes are escaped too
