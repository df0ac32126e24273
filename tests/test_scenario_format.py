"""A scenario file is checked whole at load: every problem as file:line: key: message. Fix: ..."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from edge.config import CONFIG_ROOT, ConfigError
from simulators.scenario_format import load_scenario

SCENARIOS = CONFIG_ROOT / "scenarios"

DECLARATION = """\
  - number: "105000000901"
    kind: import
    gate: HUUNGHI
    plates: ["桂F·90001"]
    seals: [SEAL-0901]
    channel: green
    status: cleared
    valid_from: {valid_from}
    valid_until: now+2d
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_scenario(path)
    return str(caught.value).splitlines()


def _line_of(path: Path, needle: str) -> int:
    return next(i for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1) if needle in line)


@pytest.mark.parametrize("name", sorted(p.name for p in SCENARIOS.glob("*.yaml")))
def test_every_shipped_scenario_loads(name: str):
    scenario = load_scenario(SCENARIOS / name)
    assert scenario.spec.trucks


def test_unquoted_date_is_named_with_its_line_and_the_fix(tmp_path: Path):
    path = _write(tmp_path, "site: huu-nghi\ndeclarations:\n" + DECLARATION.format(valid_from="2026-12-06")
                  + "trucks:\n  - {lane: IMP-1, plate: 桂F·90001}\n")
    [problem] = _problems(path)
    line = _line_of(path, "valid_from")
    assert problem.startswith(f"{path}:{line}: declarations[0].valid_from: valid_from: 2026-12-06 is a date without")
    assert "Fix: write a time with its offset in quotes" in problem and "datetime.date" not in problem


def test_every_bad_value_is_reported_at_once_with_its_line(tmp_path: Path):
    text = ("site: huu-nghi-rear-cameras\ndeclarations:\n" + DECLARATION.format(valid_from="now-1d") + """\
feed:
  - {at_s: 1, revoke: "105000000999"}
  - {at_s: 2, amend: {number: "105000000901", containers: [CSQU3054384]}}
trucks:
  - lane: IMP-1
    plates: [{plate: 桂F·90001, camera: side}]
    expect: {reasons: [SEAL_MISMACH]}
  - lane: IMP-1
    plate: 桂F·90001
    officer: {action: release, officer_id: o-1, role: officer}
    arive_after_s: 3
  - lane: EXP-1
    plate: 12C-000.01
    follow_closely: true
    officer: {action: release, officer_id: o-1, role: supervisor}
""")
    path = _write(tmp_path, text)
    problems = _problems(path)
    assert len(problems) == 1 and "arive_after_s" in problems[0]  # a key pydantic refuses stops the rest
    line = _line_of(path, "arive_after_s")
    assert re.match(rf"^{re.escape(str(path))}:{line}: trucks\[1\]\.arive_after_s: unknown key\. "
                    r"Fix: did you mean 'arrive_after_s'\?", problems[0])

    path = _write(tmp_path, text.replace("    arive_after_s: 3\n", ""))
    problems = _problems(path)
    expected = {
        "feed[0].revoke": ("105000000999", "no declaration 105000000999 in this scenario"),
        "feed[1].amend.containers": ("CSQU3054384", "CSQU3054384 is not a valid ISO 6346 container number"),
        "trucks[0].plates[0].camera": ("camera: side", "no camera 'side' at lane IMP-1"),
        "trucks[0].expect.reasons[0]": ("SEAL_MISMACH", "unknown reason code 'SEAL_MISMACH'"),
        "trucks[2].follow_closely": ("follow_closely", "no truck before this one at lane EXP-1"),
        "trucks[2].officer[0].role": ("role: supervisor", "officer o-1 is a officer elsewhere"),
    }
    assert len(problems) == len(expected), problems
    for key, (needle, message) in expected.items():
        line = _line_of(path, needle)
        found = [p for p in problems if p.startswith(f"{path}:{line}: {key}: ")]
        assert found and message in found[0] and ". Fix: " in found[0], (key, problems)
    assert any("did you mean 'SEAL_MISMATCH'" in p for p in problems)
    assert any("use one of EXP-1-anpr, EXP-1-anpr-rear, front, rear" in p or "front, rear" in p for p in problems)


def test_a_truck_needs_one_plate_key_and_a_feed_change_one_change(tmp_path: Path):
    path = _write(tmp_path, """\
site: huu-nghi
feed:
  - {at_s: 1}
trucks:
  - {lane: IMP-1}
  - {lane: IMP-1, plate: 29C-123.45, plates: [{plate: 29C-123.45}]}
""")
    problems = _problems(path)
    assert any(p.startswith(f"{path}:3: feed[0]: give exactly one of revoke") for p in problems), problems
    assert any(p.startswith(f"{path}:5: trucks[0]: give either plate") for p in problems), problems
    assert any(p.startswith(f"{path}:6: trucks[1]: give either plate") for p in problems), problems


def test_a_declarations_file_is_checked_with_its_own_lines(tmp_path: Path):
    declarations = tmp_path / "declarations.yaml"
    declarations.write_text(DECLARATION.format(valid_from="2026-12-06"), encoding="utf-8")
    path = _write(tmp_path, "site: huu-nghi\ndeclarations: declarations.yaml\ntrucks:\n  - {lane: IMP-1, plate: X}\n")
    [problem] = _problems(path)
    assert problem.startswith(f"{declarations}:{_line_of(declarations, 'valid_from')}: declarations[0].valid_from: ")
    assert "is a date without a time of day" in problem
