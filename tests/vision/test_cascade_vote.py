"""The cascade's vote on constructed ballots: who wins, when there is no reading, and the province rule."""

from __future__ import annotations

import pytest

from models.vision.cascade_vote import SETTLED, TRUST, Ballot, combined, look_alikes, province_only, settle


def test_agreeing_models_reinforce_each_other():
    text, confidence = settle(Ballot("皖AC1014", 0.9, "皖AC1014", 0.9))
    assert text == "皖AC1014" and confidence > 0.98


def test_agreement_never_makes_a_reading_less_sure_than_its_surer_model():
    # each model alone unsure, both reading the same plate: at least the surer model's chance
    text, confidence = settle(Ballot("苏E9CD08", 0.44, "苏E9CD08", 0.55))
    assert text == "苏E9CD08" and confidence >= 0.55


def test_no_model_is_trusted_beyond_trust():
    assert combined(1.0, 0.5) == pytest.approx(TRUST)
    assert combined(0.0, 0.5) == pytest.approx(1.0 - TRUST)


def test_a_sure_strong_reading_beats_an_unsure_fast_one():
    ballot = Ballot("桂AC1014", 0.44, "皖AC1014", 0.98, strong_for_fast=0.0, fast_for_strong=0.44)
    text, confidence = settle(ballot)
    assert text == "皖AC1014" and confidence > 0.9


def test_the_fast_reading_wins_where_the_strong_model_gives_it_mass():
    ballot = Ballot("皖QA999D", 0.95, "皖QA9990", 0.6, strong_for_fast=0.35, fast_for_strong=0.02)
    assert settle(ballot)[0] == "皖QA999D"


def test_a_sure_model_against_a_sure_model_is_no_reading():
    # the fast models sure of 桂, the strong model sure it is not 桂 (and unsure of its own reading):
    # neither is more likely right than wrong, so no plate is reported
    ballot = Ballot("桂AF8E56", 0.99, "新AF8E56", 0.07, strong_for_fast=0.0, fast_for_strong=0.02)
    assert settle(ballot, tie_is_none=True) is None
    ballot = Ballot("桂AF8E56", 0.99, "皖AF8E56", 0.99, strong_for_fast=0.0, fast_for_strong=0.0)
    assert settle(ballot, tie_is_none=True) is None
    # an unsure crop's vote keeps its even winner (the reader's min_confidence decides)
    assert settle(Ballot("陕K43458", 0.98, "赣K43458", 0.02, strong_for_fast=0.0, fast_for_strong=0.0)) is not None


def test_the_strong_reading_alone_stands_on_its_own_chance():
    text, confidence = settle(Ballot(None, 0.0, "皖AJ201U", 0.95, fast_for_strong=0.5))
    assert text == "皖AJ201U" and confidence == pytest.approx(0.95)


def test_without_a_strong_reading_the_fast_one_stands():
    assert settle(Ballot("29C12345", 0.7, None, 0.0)) == ("29C12345", 0.7)
    assert settle(Ballot(None, 0.0, None, 0.0)) is None


@pytest.mark.parametrize("first, second, expected", [
    ("桂AC1014", "皖AC1014", True),
    ("桂AC1014", "皖AC1O14", False),  # another character differs too
    ("桂AC1014", "桂AC1014", False),  # the same reading
    ("桂AC1014", "皖AC10145", False),  # another length
    ("29C12345", "39C12345", False),  # not a province (a VN plate)
])
def test_province_only(first, second, expected):
    assert province_only(first, second) is expected


def test_readings_apart_in_look_alike_glyphs_need_a_sure_vote():
    # the models read one plate but for G/6 and D/0: an unsure winner is no reading
    unsure = Ballot("皖A60D55", 0.52, "皖AG0055", 0.63, strong_for_fast=0.04, fast_for_strong=0.44)
    assert settle(unsure) is None
    # a container code's check digit tells look-alikes apart: its vote is not refused for them
    assert settle(unsure, look_alikes_doubtful=False)[0] == "皖AG0055"
    # the same disagreement settled surely stands
    sure = Ballot("皖A60D55", 0.44, "皖AG0055", 0.99, strong_for_fast=0.0, fast_for_strong=0.9)
    text, confidence = settle(sure)
    assert text == "皖AG0055" and confidence >= SETTLED


def test_a_model_that_hardly_reads_the_plate_raises_no_look_alike_doubt():
    # the strong model's own reading at 4 %: its W/N is noise, the fast models' sure reading stands
    ballot = Ballot("桂FQW818", 0.987, "桂FQN818", 0.04, strong_for_fast=0.02, fast_for_strong=0.44)
    assert settle(ballot)[0] == "桂FQW818"


def test_readings_apart_in_other_glyphs_are_voted_as_before():
    # 4 and 1 do not look alike: the likelier reading wins even below SETTLED
    ballot = Ballot("皖AS6X84", 0.49, "皖AS6X81", 0.68, strong_for_fast=0.0, fast_for_strong=0.44)
    text, confidence = settle(ballot)
    assert text == "皖AS6X81" and 0.5 < confidence < SETTLED


@pytest.mark.parametrize("first, second, expected", [
    ("皖A60D55", "皖AG0055", True),  # G/6 and D/0
    ("皖AMZ210", "皖AMZ21D", True),  # 0/D
    ("皖AMZ210", "皖A1Z21D", False),  # M and 1 are not alike in print
    ("皖AS6X84", "皖AS6X81", False),  # 4/1 are not alike
    ("皖AL606G", "皖AL6066", True),  # G/6
    ("皖A8M636", "皖A8M636", False),  # the same reading
    ("皖A00000", "皖ADDD00", False),  # three characters apart: not one doubtful glyph or two
    ("桂AC1014", "皖AC1014", False),  # a province is no look-alike glyph
    ("29C12345", "29C1234", False),  # another length
])
def test_look_alikes(first, second, expected):
    assert look_alikes(first, second) is expected
