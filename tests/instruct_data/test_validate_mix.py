"""validate (streaming checks, statistics) and mix (weights, dedup, determinism, split)."""

from __future__ import annotations

import json
from pathlib import Path

from instruct_data.mix import MixSpec, mix
from instruct_data.mix import main as mix_main
from instruct_data.schema import load_jsonl, write_jsonl
from instruct_data.validate import main as validate_main
from instruct_data.validate import validate_file

HERE = Path(__file__).resolve().parents[1] / "fixtures/instruct"


def golden_records() -> list[dict]:
    recs = []
    for f in sorted((HERE / "golden").glob("*.jsonl")):
        if "terrascope-bench" not in f.name:  # its images live in a per-run output folder
            recs += list(load_jsonl(f))
    return recs


def test_validate_accepts_golden_and_reports_stats(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(HERE)
    write_jsonl(tmp_path / "all.jsonl", golden_records())
    rep = validate_file(
        tmp_path / "all.jsonl",
        count_tokens=lambda r: sum(len(t["text"].split()) for t in r["turns"]),
        max_tokens=12,
    )
    # Records longer than the context are invalid (issue 15, item 10), and only those.
    assert rep.lines == 23 and rep.valid + rep.invalid == 23
    assert 0 < rep.over_context == rep.invalid < 23 and rep.token_max > 12
    assert set(rep.problems) == {"tokens: N tokens > the model's context N"}
    full = validate_file(tmp_path / "all.jsonl")
    assert full.invalid == 0 and full.valid == 23
    assert full.sources["terrascope"] == 3 and full.modalities["sar"] == 3 and full.masks == 6
    assert validate_main([str(tmp_path / "all.jsonl"), "--root", str(HERE)]) == 0


def test_validate_flags_file_level_problems(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.chdir(HERE)
    recs = golden_records()
    ms = next(r for r in recs if r["id"] == "earthmind:ms-1")
    a = json.loads(json.dumps(ms))
    a["images"][0]["wavelengths"][0] = 0.9  # B02 is 0.49
    b = json.loads(json.dumps(ms))
    b["images"][0]["path"] = "earthmind/images/nowhere"
    c = json.loads(json.dumps(ms))
    c["images"][0]["band_names"] = c["images"][0]["band_names"][:3]
    c["images"][0]["wavelengths"] = c["images"][0]["wavelengths"][:3]
    p = tmp_path / "x.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in (ms, a, b, c)) + "\n{broken\n")
    rep = validate_file(p)
    assert (rep.valid, rep.invalid) == (1, 4)
    text = " ".join(rep.problems)
    assert "Sentinel-N says" in text
    assert "missing file" in text and "the files hold" in text and "invalid JSON" in text
    assert validate_main([str(p)]) == 1


def _spec(tmp_path: Path, body: str) -> Path:
    s = tmp_path / "mix.yaml"
    s.write_text(body)
    return s


def test_mix_weights_dedup_split_deterministic(tmp_path: Path) -> None:
    recs = golden_records()
    write_jsonl(tmp_path / "a.jsonl", recs)
    write_jsonl(
        tmp_path / "b.jsonl", recs[:5] + [dict(recs[0], id="other-id")]
    )  # all duplicates of a
    body = "seed: 3\nval_fraction: 0.3\nsources:\n  - {path: a.jsonl, weight: 2}\n  - {path: b.jsonl, weight: 1}\n"
    spec = MixSpec.from_yaml(_spec(tmp_path, body))
    r1 = mix(spec, tmp_path / "o1.jsonl")
    r2 = mix(spec, tmp_path / "o2.jsonl")
    assert r1 == r2 and (tmp_path / "o1.jsonl").read_bytes() == (tmp_path / "o2.jsonl").read_bytes()
    assert r1.duplicates == 6
    train, val = (
        list(load_jsonl(tmp_path / "o1.jsonl")),
        list(load_jsonl(tmp_path / "o1.val.jsonl")),
    )
    assert len(val) > 0 and r1.train == 2 * (len(recs) - len(val)) and len(train) == r1.train
    base = lambda i: i.split("~")[0]  # noqa: E731
    assert not {base(r["id"]) for r in train} & {
        r["id"] for r in val
    }  # no leak of repeats into val
    assert len({r["id"] for r in train}) == len(train)  # repeated copies get unique ids
    assert [r["id"] for r in train] != sorted(r["id"] for r in train)  # shuffled
    other = mix(
        MixSpec.from_yaml(_spec(tmp_path, body.replace("seed: 3", "seed: 4"))),
        tmp_path / "o3.jsonl",
    )
    assert (tmp_path / "o3.jsonl").read_bytes() != (
        tmp_path / "o1.jsonl"
    ).read_bytes() or other != r1


def test_mix_fractional_weight_and_bad_spec(tmp_path: Path) -> None:
    recs = golden_records()
    write_jsonl(tmp_path / "a.jsonl", recs)
    rep = mix(
        MixSpec.from_yaml(_spec(tmp_path, "sources:\n  - {path: a.jsonl, weight: 0.5}\n")),
        tmp_path / "o.jsonl",
    )
    assert 0 < rep.train < len(recs) and not (tmp_path / "o.val.jsonl").exists()
    assert (
        mix_main(
            ["--spec", str(_spec(tmp_path, "sources: []\n")), "--out", str(tmp_path / "x.jsonl")]
        )
        == 2
    )
    assert (
        mix_main(
            [
                "--spec",
                str(_spec(tmp_path, "sources:\n  - {path: nope.jsonl}\n")),
                "--out",
                str(tmp_path / "x.jsonl"),
            ]
        )
        == 2
    )
