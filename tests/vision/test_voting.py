"""Voting across the frames of one vehicle."""

from __future__ import annotations

from models.vision.voting import FrameVoter


def test_two_agreeing_frames_decide_and_the_text_is_reported_once():
    voter = FrameVoter(min_votes=2, window_s=2.0)
    assert voter.add([("plate", "29C12345", 0.9)], at=0.0) == []
    votes = voter.add([("plate", "29C12345", 0.95)], at=0.2)
    assert [(v.text, v.frames, v.seen_at) for v in votes] == [("29C12345", 2, 0.0)]
    assert voter.add([("plate", "29C12345", 0.95)], at=0.4) == []
    assert voter.flush(at=0.6) == []


def test_one_misread_frame_does_not_win_against_the_rest():
    voter = FrameVoter(min_votes=2, window_s=2.0)
    decided = []
    for at, text in [(0.0, "29C12345"), (0.1, "29C12346"), (0.2, "29C12345"), (0.3, "29C12345")]:
        decided += voter.add([("plate", text, 0.9)], at=at)
    decided += voter.flush(at=1.0)
    assert [v.text for v in decided] == ["29C12345"]
    assert decided[0].confidence < 0.9  # the rival's frame lowers the combined confidence


def test_a_single_frame_is_reported_when_the_window_closes_and_a_tie_is_not():
    voter = FrameVoter(min_votes=2, window_s=1.0)
    voter.add([("plate", "29C12345", 0.8)], at=0.0)
    votes = voter.add([], at=1.5)  # the vehicle has gone: the window closes with its leader
    assert [(v.text, v.frames) for v in votes] == [("29C12345", 1)]
    assert votes[0].seen_at == 0.0  # decided at 1.5, but the truck was seen at 0.0
    voter.add([("plate", "51D67890", 0.8)], at=3.0)
    voter.add([("plate", "51D67899", 0.8)], at=3.1)
    assert voter.flush(at=3.2) == []


def test_plates_and_container_codes_are_voted_apart():
    voter = FrameVoter(min_votes=2, window_s=2.0)
    voter.add([("plate", "29C12345", 0.9), ("container", "CSQU3054383", 0.9)], at=0.0)
    votes = voter.add([("plate", "29C12345", 0.9), ("container", "CSQU3054383", 0.9)], at=0.1)
    assert sorted((v.kind, v.text) for v in votes) == [("container", "CSQU3054383"), ("plate", "29C12345")]
