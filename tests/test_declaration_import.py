"""Reading declarations from dicts and files: field checks, bad rows reported by line, the refresh mark."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.cache import DeclarationCache
from edge.declaration_import import ImportReport, RowError, format_import_report, import_declarations
from edge.declarations import (
    Declaration,
    DeclarationError,
    DeclarationKind,
    DeclarationStatus,
    RiskChannel,
    declaration_from_mapping,
    declaration_to_mapping,
)

NOW = datetime(2025, 3, 1, 8, 0, tzinfo=UTC)
HEADER = "number,kind,gate,plates,containers,seals,gross_weight_kg,channel,status,valid_from,valid_until,version"


def row(**changes: object) -> dict[str, object]:
    base: dict[str, object] = {
        "number": "103456789012", "kind": "import", "gate": "HUU_NGHI", "plates": "29C-123.45",
        "containers": "CSQU 305438-3", "seals": "SEAL00000001", "gross_weight_kg": "24500",
        "channel": "green", "status": "cleared", "valid_from": "2025-03-01T00:00:00",
        "valid_until": "2025-03-08T00:00:00", "version": "1",
    }
    base.update(changes)
    return base


def csv_line(number: str, plate: str = "29C12345", channel: str = "green", version: str = "1") -> str:
    return f"{number},import,HUU_NGHI,{plate},CSQU3054383,S1,24500,{channel},cleared,,2025-03-08T00:00:00,{version}"


@pytest.fixture
def cache() -> Iterator[DeclarationCache]:
    opened = DeclarationCache.open(":memory:")
    yield opened
    opened.close()


# -- one declaration from a dict ----------------------------------------------------------------


def test_csv_style_row_becomes_a_normalised_declaration() -> None:
    d = declaration_from_mapping(row(plates="29C-123.45; 29R-001.23", seals="S1|S2"))

    assert d == Declaration(
        number="103456789012", kind=DeclarationKind.IMPORT, gate="HUU_NGHI", plates=("29C12345", "29R00123"),
        containers=("CSQU3054383",), seals=("S1", "S2"), gross_weight_kg=24_500.0, channel=RiskChannel.GREEN,
        status=DeclarationStatus.CLEARED, valid_from=datetime(2025, 3, 1, tzinfo=UTC),
        valid_until=datetime(2025, 3, 8, tzinfo=UTC), version=1,
    )


def test_json_style_object_with_lists_numbers_and_offsets() -> None:
    d = declaration_from_mapping({
        "number": "1", "kind": "Export", "gate": "LAO_BAO", "plates": ["桂F·12345"], "containers": [],
        "gross_weight_kg": 18250.5, "channel": "RED", "status": "held",
        "valid_until": "2025-03-08T07:00:00+07:00", "version": 4,
    })

    assert d.kind is DeclarationKind.EXPORT and d.channel is RiskChannel.RED
    assert d.plates == ("桂F12345",) and d.containers == () and d.seals == ()
    assert d.gross_weight_kg == 18250.5 and d.version == 4
    assert d.valid_until == datetime(2025, 3, 8, 0, 0, tzinfo=UTC)
    assert d.valid_until.utcoffset() == timedelta(0)


def test_empty_optional_fields_take_their_defaults() -> None:
    d = declaration_from_mapping(row(plates="", containers="", seals="", gross_weight_kg="", valid_from="",
                                     version=""))

    assert (d.plates, d.containers, d.seals, d.gross_weight_kg, d.version) == ((), (), (), None, 1)
    assert d.valid_from == datetime(1970, 1, 1, tzinfo=UTC)


def test_container_with_wrong_check_digit_is_kept_for_the_rules_to_report() -> None:
    assert declaration_from_mapping(row(containers="CSQU3054384")).containers == ("CSQU3054384",)


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"channel": "purple"}, "channel: 'purple' is not one of green, yellow, red"),
        ({"kind": "smuggling"}, "kind: 'smuggling' is not one of import, export, transit"),
        ({"status": "maybe"}, "status: 'maybe' is not one of cleared, held, cancelled"),
        ({"number": ""}, "number: missing"),
        ({"gate": None}, "gate: missing"),
        ({"valid_until": "  "}, "valid_until: missing"),
        ({"valid_until": "2025-13-01"}, "valid_until: '2025-13-01' is not an ISO 8601 time"),
        ({"valid_from": "yesterday"}, "valid_from: 'yesterday' is not an ISO 8601 time"),
        ({"valid_until": "2025-02-01"}, "valid_until: 2025-02-01T00:00:00+00:00 is before valid_from"),
        ({"gross_weight_kg": "heavy"}, "gross_weight_kg: 'heavy' is not a number"),
        ({"gross_weight_kg": "-5"}, "gross_weight_kg: '-5' is not a weight"),
        ({"version": "2.5"}, "version: '2.5' is not a whole number"),
        ({"plates": {"front": "29C12345"}}, "plates: {'front': '29C12345'} is neither a list nor a text"),
    ],
)
def test_bad_field_is_named_with_the_fix(changes: dict[str, object], expected: str) -> None:
    with pytest.raises(DeclarationError) as caught:
        declaration_from_mapping(row(**changes))

    assert str(caught.value).startswith(expected)


def test_several_missing_fields_are_named_together() -> None:
    with pytest.raises(DeclarationError, match=r"^kind, channel: missing"):
        declaration_from_mapping({"number": "1", "gate": "HN", "status": "cleared", "valid_until": "2025-03-08"})


def test_full_width_identifiers_are_folded_like_the_readings() -> None:
    d = declaration_from_mapping(row(plates="２９Ｃ－１２３．４５", containers="ＣＳＱＵ　３０５４３８３",
                                     seals="5e0001ab|cn・seal－7"))

    assert (d.plates, d.containers, d.seals) == (("29C12345",), ("CSQU3054383",), ("5E0001AB", "CNSEAL7"))


@pytest.mark.parametrize("separator", [";", "|", "/", ",", "\n", "\r\n", " ; ", "、", "；", "／", "，", "｜"])
def test_each_separator_customs_documents_use_splits_a_list_field(separator: str) -> None:
    d = declaration_from_mapping(row(plates=f"29C-890.12{separator}29R-034.56",
                                     containers=f"CSQU3054383{separator}MWCU6059784",
                                     seals=f"CN-SEAL-0001{separator}5E0001AB"))

    assert d.plates == ("29C89012", "29R03456")
    assert d.containers == ("CSQU3054383", "MWCU6059784")
    assert d.seals == ("CNSEAL0001", "5E0001AB")


def test_a_slash_between_a_tractor_and_a_trailer_plate_gives_two_plates_whole() -> None:
    assert declaration_from_mapping(row(plates="29C-890.12/29R-034.56")).plates == ("29C89012", "29R03456")
    # a written list inside one entry of a list (a YAML or JSON item) is split too
    assert declaration_from_mapping(row(plates=["29C-890.12/29R-034.56"])).plates == ("29C89012", "29R03456")


def test_separators_inside_one_identifier_stay_in_it() -> None:
    d = declaration_from_mapping(row(plates="桂A·12345; 29C-123.45 | 51D-123.45", seals="CN-SEAL-000101"))

    assert d.plates == ("桂A12345", "29C12345", "51D12345")
    assert d.seals == ("CNSEAL000101",)


@pytest.mark.parametrize("gate", ["huu_nghi", " HUU_NGHI ", "Huu_Nghi\t", "ＨＵＵ＿ＮＧＨＩ"])
def test_gate_code_is_trimmed_and_upper_cased(gate: str) -> None:
    assert declaration_from_mapping(row(gate=gate)).gate == "HUU_NGHI"


def test_csv_cells_with_commas_and_new_lines_give_one_entry_each(cache: DeclarationCache, tmp_path: Path) -> None:
    path = tmp_path / "declarations.csv"
    record = ('8,import,huu_nghi,"29C-890.12, 29R-034.56","CSQU3054383\nMWCU6059784",SEAL-1/SEAL-2,24500,'
              "green,cleared,,2025-03-08T00:00:00,1")
    path.write_text(HEADER + "\n" + record + "\n", encoding="utf-8")

    report = import_declarations(cache, path, now=NOW)

    assert (report.imported, report.errors) == (1, [])
    stored = cache.get("8")
    assert stored is not None and stored.gate == "HUU_NGHI"
    assert (stored.plates, stored.containers, stored.seals) == (
        ("29C89012", "29R03456"), ("CSQU3054383", "MWCU6059784"), ("SEAL1", "SEAL2"))
    assert [d.number for d in cache.by_plate("29R-034.56")] == ["8"]


@pytest.mark.parametrize("plate", ["29C\x00123.45", "29C-\u202e54.321", "29C\u2066123.45"])
def test_a_plate_with_a_nul_or_bidi_control_is_refused(plate: str) -> None:
    with pytest.raises(DeclarationError, match="plates: an entry holds a"):
        declaration_from_mapping(row(plates=plate))


def test_csv_with_full_width_identifiers_imports_and_matches(cache: DeclarationCache, tmp_path: Path) -> None:
    path = tmp_path / "declarations.csv"
    path.write_text(HEADER + "\n" + csv_line("7", plate="２９Ｃ－１２３．４５") + "\n", encoding="utf-8")

    report = import_declarations(cache, path, now=NOW)

    assert (report.imported, report.errors) == (1, [])
    assert [d.number for d in cache.by_plate("29C-123.45")] == ["7"]
    assert [d.number for d in cache.by_plate("２９Ｃ１２３４５")] == ["7"]


def test_declaration_error_is_a_value_error() -> None:
    assert issubclass(DeclarationError, ValueError)


_texts = st.text(alphabet="ABCDEFGHKLMNPRSTUVXYZ0123456789", min_size=1, max_size=12)
_moments = st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1),
                        timezones=st.sampled_from([UTC, timezone(timedelta(hours=7))]))


@given(
    number=_texts, kind=st.sampled_from(DeclarationKind), channel=st.sampled_from(RiskChannel),
    status=st.sampled_from(DeclarationStatus), plates=st.lists(_texts, max_size=3, unique=True),
    seals=st.lists(_texts, max_size=3, unique=True),
    weight=st.none() | st.floats(min_value=0, max_value=100_000, allow_nan=False),
    start=_moments, length=st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)),
    version=st.integers(0, 10**6),
)
def test_declaration_survives_a_trip_through_json(
    number: str, kind: DeclarationKind, channel: RiskChannel, status: DeclarationStatus, plates: list[str],
    seals: list[str], weight: float | None, start: datetime, length: timedelta, version: int,
) -> None:
    original = Declaration(
        number=number, kind=kind, gate="HUU_NGHI", plates=tuple(plates), containers=("MWCU6059784",),
        seals=tuple(seals), gross_weight_kg=weight, channel=channel, status=status,
        valid_from=start.astimezone(UTC), valid_until=(start + length).astimezone(UTC), version=version,
    )

    mapping = json.loads(json.dumps(declaration_to_mapping(original)))

    assert declaration_from_mapping(mapping) == original


# -- files --------------------------------------------------------------------------------------


def test_csv_bad_row_is_reported_on_its_line_and_the_others_imported(cache: DeclarationCache, tmp_path: Path) -> None:
    path = tmp_path / "declarations.csv"
    path.write_text("\n".join([
        HEADER,                                                      # line 1
        csv_line("1"),                                               # line 2
        "",                                                          # line 3: blank
        '2,import,HUU_NGHI,"29C-111.11;',                            # line 4: a quoted field over two lines
        '29R-001.23",,,,green,cleared,,2025-03-08T00:00:00,1',       # line 5
        csv_line("3", channel="purple"),                             # line 6: the bad row
        csv_line("4", plate="51D-678.90"),                           # line 7
    ]) + "\n", encoding="utf-8")

    report = import_declarations(cache, path, now=NOW)

    assert report == ImportReport(imported=3, skipped=1, errors=[
        RowError(6, "channel: 'purple' is not one of green, yellow, red")])
    assert [d.number for d in cache.by_plate("29R00123")] == ["2"]
    assert [d.number for d in cache.by_plate("51D67890")] == ["4"]
    assert cache.get("3") is None


def test_csv_row_with_a_field_too_many_is_reported(cache: DeclarationCache, tmp_path: Path) -> None:
    path = tmp_path / "declarations.csv"
    path.write_text(f"{HEADER}\n{csv_line('1')},extra\n{csv_line('2')}\n", encoding="utf-8")

    report = import_declarations(cache, path, now=NOW)

    assert report.imported == 1
    assert [(e.line, e.message.split(";")[0]) for e in report.errors] == [
        (2, "row has 13 fields but the header has 12")]


def test_csv_saved_by_excel_with_a_byte_order_mark_imports(cache: DeclarationCache, tmp_path: Path) -> None:
    path = tmp_path / "declarations.csv"
    path.write_bytes(("\ufeff" + f"{HEADER}\r\n{csv_line('1')}\r\n").encode("utf-8"))

    assert import_declarations(cache, path, now=NOW).imported == 1


def test_csv_without_required_columns_is_refused_whole(cache: DeclarationCache, tmp_path: Path) -> None:
    path = tmp_path / "declarations.csv"
    path.write_text("number,kind,gate,plates\n1,import,HUU_NGHI,29C12345\n", encoding="utf-8")

    with pytest.raises(DeclarationError, match="lacks column.*channel, status, valid_until"):
        import_declarations(cache, path, now=NOW)
    assert cache.count() == 0
    assert cache.refreshed_at() is None


def test_json_bad_object_is_reported_on_the_line_it_starts(cache: DeclarationCache, tmp_path: Path) -> None:
    objects = [row(number="1"), row(number="2", channel="purple"), row(number="3")]
    path = tmp_path / "declarations.json"
    path.write_text(json.dumps(objects, indent=2), encoding="utf-8")
    text = path.read_text(encoding="utf-8")
    second_starts = text[:text.index('"number": "2"')].rindex("{")
    expected_line = text.count("\n", 0, second_starts) + 1

    report = import_declarations(cache, path, now=NOW)

    assert expected_line == 16  # `[` on line 1, then 14 lines per object
    assert report.imported == 2
    assert report.errors == [RowError(expected_line, "channel: 'purple' is not one of green, yellow, red")]


def test_json_wrapped_in_a_declarations_key_imports(cache: DeclarationCache, tmp_path: Path) -> None:
    path = tmp_path / "feed.json"
    path.write_text(
        '{"source": "central", "generated": [1, 2],\n'
        ' "declarations": [\n'
        f'  {json.dumps(row(number="1"))},\n'
        '  "not an object",\n'
        f'  {json.dumps(row(number="2", valid_until="soon"))}\n'
        ' ], "count": 2}\n',
        encoding="utf-8",
    )

    report = import_declarations(cache, path, now=NOW)

    assert report.imported == 1
    assert [(e.line, e.message) for e in report.errors] == [
        (4, "expected a JSON object, got a string"),
        (5, "valid_until: 'soon' is not an ISO 8601 time; write it like 2024-05-01T08:00:00+07:00"),
    ]


def test_json_with_broken_syntax_is_refused_and_imports_nothing(cache: DeclarationCache, tmp_path: Path) -> None:
    path = tmp_path / "declarations.json"
    path.write_text(f'[\n{json.dumps(row(number="1"))},\n{{"number": "2",,}}\n]\n', encoding="utf-8")

    with pytest.raises(DeclarationError, match="not valid JSON at line 3"):
        import_declarations(cache, path, now=NOW)
    assert cache.count() == 0


@pytest.mark.parametrize("content", ['{"items": []}', "42", "", "[] []"])
def test_json_without_a_list_of_declarations_is_refused(
    cache: DeclarationCache, tmp_path: Path, content: str
) -> None:
    path = tmp_path / "declarations.json"
    path.write_text(content, encoding="utf-8")

    with pytest.raises(DeclarationError):
        import_declarations(cache, path, now=NOW)


@pytest.mark.parametrize("suffix", [".jsonl", ".ndjson"])
def test_json_lines_report_bad_lines_and_import_the_rest(
    cache: DeclarationCache, tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"declarations{suffix}"
    path.write_text("\n".join([
        json.dumps(row(number="1")),
        "",
        '{"number": "2", "kind": ',
        "[1, 2]",
        json.dumps(row(number="3", plates=["51D-678.90"])),
    ]) + "\n", encoding="utf-8")

    report = import_declarations(cache, path, now=NOW)

    assert report.imported == 2 and report.skipped == 2
    assert [e.line for e in report.errors] == [3, 4]
    assert report.errors[0].message.startswith("not valid JSON")
    assert report.errors[1].message == "expected a JSON object, got a list"
    assert [d.number for d in cache.by_plate("51D67890")] == ["3"]


def test_older_versions_in_a_file_are_skipped_without_errors(cache: DeclarationCache, tmp_path: Path) -> None:
    path = tmp_path / "declarations.csv"
    path.write_text(f"{HEADER}\n{csv_line('1', version='5')}\n{csv_line('1', version='4')}\n{csv_line('2')}\n",
                    encoding="utf-8")

    report = import_declarations(cache, path, now=NOW)

    assert (report.imported, report.skipped, report.errors) == (2, 1, [])
    got = cache.get("1")
    assert got is not None and got.version == 5


def test_unreadable_files_are_refused_with_the_reason(cache: DeclarationCache, tmp_path: Path) -> None:
    with pytest.raises(DeclarationError, match="cannot read .*missing.csv"):
        import_declarations(cache, tmp_path / "missing.csv")
    (tmp_path / "folder.json").mkdir()
    with pytest.raises(DeclarationError, match="cannot read"):
        import_declarations(cache, tmp_path / "folder.json")
    latin1 = tmp_path / "latin1.csv"
    latin1.write_bytes(f"{HEADER}\n".encode() + "1,import,Móng Cái".encode("latin-1"))
    with pytest.raises(DeclarationError, match="not UTF-8"):
        import_declarations(cache, latin1)
    assert cache.refreshed_at() is None


def test_spreadsheet_file_is_refused_with_the_formats_to_use(cache: DeclarationCache, tmp_path: Path) -> None:
    path = tmp_path / "declarations.xlsx"
    path.write_bytes(b"PK\x03\x04")

    with pytest.raises(DeclarationError, match=r"\.xlsx: give a \.csv, \.json, \.jsonl or \.ndjson file"):
        import_declarations(cache, path)


def test_import_marks_the_cache_refreshed(cache: DeclarationCache, tmp_path: Path) -> None:
    path = tmp_path / "declarations.csv"
    path.write_text(f"{HEADER}\n{csv_line('1')}\n", encoding="utf-8")

    import_declarations(cache, path, now=NOW)

    assert cache.refreshed_at() == NOW
    assert cache.age_seconds(NOW + timedelta(minutes=1)) == 60.0


def test_file_of_only_bad_rows_does_not_make_the_cache_look_fresh(cache: DeclarationCache, tmp_path: Path) -> None:
    path = tmp_path / "declarations.csv"
    path.write_text(f"{HEADER}\n{csv_line('1', channel='purple')}\n", encoding="utf-8")

    report = import_declarations(cache, path, now=NOW)

    assert (report.imported, report.skipped) == (0, 1)
    assert cache.refreshed_at() is None


def test_report_reads_like_the_cli_prints_it() -> None:
    report = ImportReport(imported=3, skipped=2, errors=[RowError(6, "channel: 'purple' is not one of green, "
                                                                     "yellow, red")])

    assert format_import_report(report) == (
        "imported 3, skipped 2\n"
        "  line 6: channel: 'purple' is not one of green, yellow, red"
    )


def test_import_refuses_a_declaration_nothing_can_match_and_a_wrong_container_number(cache, tmp_path: Path) -> None:
    """A declaration with no plate and no container can never meet a truck, and one whose container number
    fails ISO 6346 never matches the real box: both are reported with their line; the good row is imported."""
    path = tmp_path / "decls.csv"
    path.write_text("\n".join([
        HEADER,
        csv_line("100000000001"),
        "100000000002,import,HUU_NGHI,,,S1,24500,green,cleared,,2025-03-08T00:00:00,1",
        "100000000003,import,HUU_NGHI,29C12345,CSQU3054384,S1,24500,green,cleared,,2025-03-08T00:00:00,1",
        "100000000004,import,HUU_NGHI,29C12345,CSQ3054383,S1,24500,green,cleared,,2025-03-08T00:00:00,1",
    ]) + "\n", encoding="utf-8")

    report = import_declarations(cache, path, now=NOW)

    assert report.imported == 1 and cache.get("100000000001") is not None
    errors = {error.line: error.message for error in report.errors}
    assert set(errors) == {3, 4, 5}
    assert "both empty" in errors[3]
    assert "CSQU3054384 is not a valid ISO 6346" in errors[4] and "check digit should be 3" in errors[4]
    assert "CSQ3054383 is not a valid ISO 6346" in errors[5]
    assert all(cache.get(n) is None for n in ("100000000002", "100000000003", "100000000004"))
