"""Central's page says everything in both languages: the catalogues match and every key the page uses exists."""

from __future__ import annotations

import re

from sync.central.web import page
from sync.central.web.alarms import SEVERITIES


def test_catalogues_have_the_same_keys_placeholders_and_no_empty_message():
    en, vi = page.catalogue("en"), page.catalogue("vi")
    assert set(en) == set(vi)
    assert all(text.strip() for text in [*en.values(), *vi.values()])
    for key in en:
        assert set(re.findall(r"\{(\w+)\}", en[key])) == set(re.findall(r"\{(\w+)\}", vi[key])), key


def test_every_key_the_page_uses_exists_in_both_languages():
    sources = "".join(p.read_text(encoding="utf-8")
                      for p in [*page.STATIC_DIR.glob("*.js"), *page.TEMPLATE_DIR.glob("*.html")])
    used = set(re.findall(r"""\bt\(\s*"([a-z_]+\.[A-Za-z_.]+)\"""", sources))
    used |= set(re.findall(r'data-i18n(?:-placeholder)?="([^"]+)"', sources))
    used |= set(re.findall(r"\{\{t:([A-Za-z0-9_.\-]+)\}\}", sources))
    used |= {f"severity.{name}" for name in SEVERITIES} | {f"role.{r}" for r in ("monitor", "operator", "admin")}
    used |= {f"outcome.{o}" for o in ("release", "hold", "refuse")} | {f"source.{s}" for s in ("central", "gate",
                                                                                                  "status")}
    assert len(used) > 60
    missing = sorted(k for k in used if k not in page.catalogue("en") or k not in page.catalogue("vi"))
    assert not missing, missing


def test_the_kiosk_time_units_the_shared_script_uses_are_here_too():
    for key in ("unit.s", "unit.min", "unit.h_min", "unit.d_h", "lang.vi", "lang.en"):
        assert key in page.catalogue("en") and key in page.catalogue("vi")
