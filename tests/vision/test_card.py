"""The model-card writer keeps the sections measured and written by hand when it regenerates a card."""

from __future__ import annotations

from models.training.card import _write_card, kept_sections

OLD_CARD = """# Plate reader

## Limits
- generated limit

## Real images (issue #29)

| reader | exact |
| --- | --- |
| cascade | 94.4 % |

## Notes
- generated note
"""


def test_regenerating_a_card_keeps_its_real_image_section(tmp_path):
    card = tmp_path / "plate_reader.md"
    card.write_text(OLD_CARD)

    _write_card(card, ["# Plate reader", "", "## Limits", "- new limit"])

    text = card.read_text()
    assert "- new limit" in text and "- generated limit" not in text
    assert "| cascade | 94.4 % |" in text
    assert "generated note" not in text  # only the hand-written headings are kept
    assert text.index("## Limits") < text.index("## Real images")


def test_a_new_card_has_no_kept_sections(tmp_path):
    card = tmp_path / "container_reader.md"
    _write_card(card, ["# Container reader", "", "## Limits", "- a limit"])
    assert card.read_text() == "# Container reader\n\n## Limits\n- a limit\n"
    assert kept_sections(card.read_text()) == []
