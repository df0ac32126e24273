"""Voting across the frames of one vehicle: a reading is reported once enough frames agree.

Each frame's readings are votes weighted by confidence. A text is decided when it has at least
`min_votes` frames and beats every rival by the margin, or when the vehicle's window closes with
it ahead. The reported confidence is the winner's share of the total weight in the window, times
its mean confidence: one frame of 0.99 against two of a rival does not win.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class _Tally:
    weight: float = 0.0
    frames: int = 0
    best_confidence: float = 0.0
    first_at: float = 0.0  # when the first frame that read it was taken
    confidences: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Vote:
    """The text the frames agreed on, its combined confidence, how many frames saw it and when the first
    of them was taken (the vote may come seconds later: the vehicle was seen then, not when it was decided)."""

    text: str
    kind: str
    confidence: float
    frames: int
    seen_at: float = 0.0


class FrameVoter:
    """Collects per-frame readings of one camera and decides each vehicle's text once."""

    def __init__(self, min_votes: int = 2, window_s: float = 2.0, margin: float = 0.5):
        self.min_votes, self.window_s, self.margin = min_votes, window_s, margin
        self._tallies: dict[tuple[str, str], _Tally] = {}
        self._opened_at: float | None = None
        self._decided: set[tuple[str, str]] = set()

    def add(self, readings: list[tuple[str, str, float]], at: float) -> list[Vote]:
        """Add one frame's (kind, text, confidence) readings; returns the votes decided now."""
        decided = self._expire(at)
        if not readings:
            return decided
        if self._opened_at is None:
            self._opened_at = at
        seen_this_frame: set[tuple[str, str]] = set()
        for kind, text, confidence in readings:
            key = (kind, text)
            if key in seen_this_frame:
                continue
            seen_this_frame.add(key)
            tally = self._tallies.setdefault(key, _Tally(first_at=at))
            tally.weight += confidence
            tally.frames += 1
            tally.confidences.append(confidence)
            tally.best_confidence = max(tally.best_confidence, confidence)
        for kind in {k for k, _ in seen_this_frame}:
            vote = self._leader(kind, final=False)
            if vote is not None:
                decided.append(vote)
        return decided

    def flush(self, at: float) -> list[Vote]:
        """Close the window now (the vehicle has gone); returns the votes still undecided."""
        return self._close()

    def _expire(self, at: float) -> list[Vote]:
        if self._opened_at is not None and at - self._opened_at >= self.window_s:
            return self._close()
        return []

    def _close(self) -> list[Vote]:
        votes = []
        for kind in {k for k, _ in self._tallies}:
            vote = self._leader(kind, final=True)
            if vote is not None:
                votes.append(vote)
        self._tallies.clear()
        self._decided.clear()
        self._opened_at = None
        return votes

    def _leader(self, kind: str, final: bool) -> Vote | None:
        rivals = sorted(((t.weight, text, t) for (k, text), t in self._tallies.items() if k == kind), reverse=True)
        if not rivals:
            return None
        weight, text, tally = rivals[0]
        if (kind, text) in self._decided:
            return None
        runner_up = rivals[1][0] if len(rivals) > 1 else 0.0
        total = sum(r[0] for r in rivals)
        ahead = weight - runner_up >= self.margin * weight
        if not final and not (tally.frames >= self.min_votes and ahead):
            return None
        if final and runner_up >= weight:
            return None  # a tie is no decision
        self._decided.add((kind, text))
        mean = sum(tally.confidences) / len(tally.confidences)
        return Vote(text, kind, round(mean * weight / total, 4), tally.frames, tally.first_at)
