"""Converters: golden outputs on the committed fixtures, skip counting, CLI, safe pickle."""

from __future__ import annotations

import json
import os
import pickle
import sys
from pathlib import Path

import pytest

from instruct_data.convert import get_converter, list_converters, run_conversion
from instruct_data.convert.__main__ import main as convert_main
from instruct_data.convert.safe_pickle import load_plain_pickle
from instruct_data.schema import load_jsonl, validate_record
from skyeye.errors import DataFileError

FIX = Path(__file__).resolve().parents[1] / "fixtures"
HERE = FIX / "instruct"
sys.path.insert(0, str(FIX))
from make_instruct_fixtures import CASES, case_name, normalise_output  # noqa: E402


@pytest.mark.parametrize("source, inp, images", CASES, ids=[case_name(s, i) for s, i, _ in CASES])
def test_converter_matches_golden(
    source: str, inp: str, images: str, tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(HERE)
    name = case_name(source, inp)
    out = tmp_path / f"{name}.jsonl"
    rep = run_conversion(get_converter(source), Path(inp), Path(images), out).as_dict()
    rep.pop("seconds")
    assert rep == json.loads((HERE / "golden" / f"{name}.report.json").read_text())
    assert (
        normalise_output(out.read_text(), tmp_path)
        == (HERE / "golden" / f"{name}.jsonl").read_text()
    )
    # every fixture has bad records, and every written line is valid with existing images
    assert rep["skipped"] and rep["written"] > 0
    for rec in load_jsonl(out):
        assert validate_record(rec) == []
        for im in rec["images"]:
            for p in im["path"] if isinstance(im["path"], list) else [im["path"]]:
                assert Path(p).exists(), p


def test_registry_lists_all_sources() -> None:
    assert list_converters() == sorted(
        [
            "skyeyegpt",
            "chatearthnet",
            "earthmind",
            "earthmind-bench",
            "terrascope",
            "terrascope-bench",
            "llava",
            "levir-cc",
            "levir-mci",
            "cdvqa",
        ]
    )
    with pytest.raises(KeyError, match="choose one of"):
        get_converter("nope")


def test_cli_prints_summary_and_writes_report(tmp_path: Path, capsys) -> None:
    rep = tmp_path / "rep.json"
    rc = convert_main(
        [
            "--source",
            "llava",
            "--input",
            str(HERE / "llava/geochat_instruct.json"),
            "--images",
            str(HERE / "llava/images"),
            "--out",
            str(tmp_path / "o.jsonl"),
            "--report-json",
            str(rep),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "skipped: unparseable box" in out and "conversations written" in out
    assert json.loads(rep.read_text())["skipped"]["missing image"] == 1
    assert (
        convert_main(
            [
                "--source",
                "llava",
                "--input",
                str(tmp_path / "none.json"),
                "--images",
                str(tmp_path),
                "--out",
                str(tmp_path / "x"),
            ]
        )
        == 2
    )


def test_truncated_json_is_an_error_naming_the_byte_and_keeps_the_old_output(
    tmp_path: Path,
) -> None:
    src = (HERE / "llava/geochat_instruct.json").read_text()
    bad = tmp_path / "cut.json"
    bad.write_text(src[: src.index('"id": "g4"')])
    out = tmp_path / "o.jsonl"
    out.write_text("previous\n")
    with pytest.raises(
        DataFileError,
        match=r"cut.json: the file ends inside the JSON list \(the record at byte \d+",
    ):
        run_conversion(get_converter("llava"), bad, HERE / "llava/images", out)
    assert out.read_text() == "previous\n"


def test_jsonl_and_object_inputs_are_detected(tmp_path: Path) -> None:
    recs = json.loads((HERE / "llava/geochat_instruct.json").read_text())
    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in recs) + "\nnot json\n")
    (tmp_path / "b.json").write_text(json.dumps({"meta": {"v": [1]}, "data": recs}))
    ra = run_conversion(
        get_converter("llava"), tmp_path / "a.jsonl", HERE / "llava/images", tmp_path / "a.out"
    )
    rb = run_conversion(
        get_converter("llava"), tmp_path / "b.json", HERE / "llava/images", tmp_path / "b.out"
    )
    assert ra.written == rb.written == 3
    assert ra.skipped["malformed record"] == 1
    assert list(rb.shapes) == ["b.json: json-object:data"]


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


def test_safe_pickle_admits_only_plain_builtins(tmp_path: Path) -> None:
    ok = tmp_path / "ok.p"
    ok.write_bytes(
        pickle.dumps([{"ref_id": 1, "sentences": [{"sent": "x"}], "box": (1.0, 2)}, None, True])
    )
    assert load_plain_pickle(ok)[0]["ref_id"] == 1
    for i, obj in enumerate([Evil(), {1, 2}, b"raw", [Path("x")]]):
        p = tmp_path / f"bad{i}.p"
        p.write_bytes(pickle.dumps(obj))
        with pytest.raises(pickle.UnpicklingError, match="refusing"):
            load_plain_pickle(p)


def test_options_already_labelled_with_their_letters_are_written_once() -> None:
    from instruct_data.convert.earthmind import mcq_turns

    # EarthMind-Bench's candidates carry their own labels: "A. The remote sensing image ...".
    labelled = ["A. The remote sensing image shows a port.", "B. A forest.", "C. A city"]
    turns, letter = mcq_turns("What is shown?", labelled, "A", 1)
    question = turns[0].text
    assert "A. The remote sensing image shows a port.\nB. A forest.\nC. A city\n" in question
    assert "A. A." not in question and letter == "A"
    assert mcq_turns("What is shown?", labelled, "B. A forest.", 1)[1] == "B"
    assert mcq_turns("What is shown?", ["(A) port", "(B) forest"], "forest", 1)[1] == "B"
    # Options that only start with a letter keep it: "A forest" is an option's text.
    turns, _ = mcq_turns("Which?", ["A forest", "B-52 bombers"], "A forest", 1)
    assert "A. A forest\nB. B-52 bombers\n" in turns[0].text
