"""Issue 15 (done-when fuzz): 1,000 records per source format, about a third of them damaged at
random (non-UTF-8 bytes, broken syntax, truncation, wrong types, huge values), go through
convert -> validate -> mix -> the training Dataset with no traceback, and every record is
accounted for at every stage: converted + skipped-by-reason = read; every undamaged record gives
exactly the conversations it gives undamaged; validate sees every line; mix skips exactly the
bad lines added to its input; the Dataset yields an example or a counted skip for every record.
Seeded: a failure replays."""

from __future__ import annotations

import copy
import json
import random
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from instruct_data.convert import get_converter, run_conversion
from instruct_data.mix import MixSpec, mix
from instruct_data.validate import validate_file

HERE = Path(__file__).resolve().parents[1] / "fixtures" / "instruct"
N = 1000
#: source -> (input under the fixtures, its image root)
SOURCES = {
    "skyeyegpt": ("skyeyegpt/annotations", "skyeyegpt/images"),
    "chatearthnet": ("chatearthnet/ChatEarthNet_caps_35_train.json", "chatearthnet/images"),
    "earthmind": ("earthmind/train.json", "earthmind/images"),
    "earthmind-bench": ("earthmind-bench/bench.json", "earthmind-bench/images"),
    "terrascope": ("terrascope/terra_cot.json", "terrascope/images"),
    "terrascope-bench": ("terrascope-bench/bench.parquet", "terrascope-bench/images"),
    "llava": ("llava/geochat_instruct.json", "llava/images"),
}
KINDS = ("bytes", "syntax", "truncate", "types", "huge")
MARK = "@@FUZZ@@"
WRONG = [12345, None, [], {}, True, -1.5e308, "", "../../etc/passwd", "/etc/passwd", [[1, 2]]]


def _leaves(obj: Any, path: tuple = ()) -> list[tuple]:
    """Paths of every value inside `obj` (the record's own top-level id excluded)."""
    out = []
    items = (
        obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else []
    )
    for k, v in items:
        if path == () and k == "id":
            continue
        out.append((*path, k))
        out += _leaves(v, (*path, k))
    return out


def _set(obj: Any, path: tuple, value: Any) -> None:
    for k in path[:-1]:
        obj = obj[k]
    obj[path[-1]] = value


def _get(obj: Any, path: tuple) -> Any:
    for k in path:
        obj = obj[k]
    return obj


def _balance(text: str) -> str:
    """Close the string and brackets a cut JSON text left open (one element stays one)."""
    stack, in_str, esc = [], False, False
    for ch in text:
        if in_str:
            esc, in_str = (False, in_str) if esc else (ch == "\\", ch != '"')
        elif ch == '"':
            in_str = True
        elif ch in "[{":
            stack.append("]" if ch == "[" else "}")
        elif ch in "]}" and stack:
            stack.pop()
    if esc:
        text = text[:-1]
    return text + ('"' if in_str else "") + "".join(reversed(stack))


def _damage(rec: Any, kind: str, rng: random.Random) -> bytes:
    """`rec` serialised with one damage of `kind`; the result is still one list element."""
    rec = copy.deepcopy(rec)
    leaves = _leaves(rec)
    if kind == "bytes":
        strings = [p for p in leaves if isinstance(_get(rec, p), str)]
        _set(rec, rng.choice(strings), _get(rec, rng.choice(strings)) + MARK)
        bad = rng.choice([b"\xff", b"\xfe\xfe", b"\xc3\x28", b"\xe2\x82", b"\xed\xa0\x80"])
        return json.dumps(rec, ensure_ascii=False).encode().replace(MARK.encode(), bad, 1)
    if kind == "types" and leaves:
        _set(rec, rng.choice(leaves), copy.deepcopy(rng.choice(WRONG)))
    if kind == "huge" and leaves:
        big = rng.choice(["x" * 200_000, ["<image>"] * 5_000, 10**30, "<image>" * 2_000])
        _set(rec, rng.choice(leaves), big)
    text = json.dumps(rec, ensure_ascii=False)
    if kind == "syntax":
        text = text.replace(":", "", 1)
    if kind == "truncate":
        text = _balance(text[: rng.randrange(1, max(2, len(text) - 1))])
    return text.encode()


def _fixture_records(source: str) -> dict[str, tuple[Any, list]]:
    """file (relative to the input) -> (its top-level JSON with the list emptied, records)."""
    inp = HERE / SOURCES[source][0]
    files = sorted(inp.rglob("*.json")) if inp.is_dir() else [inp]
    out = {}
    for f in files:
        top = json.loads(f.read_text())
        key = (
            None
            if isinstance(top, list)
            else next(k for k, v in top.items() if isinstance(v, list))
        )
        recs = top if key is None else top[key]
        out[f.relative_to(inp).as_posix() if inp.is_dir() else f.name] = (key, recs, top)
    return out


def _write_inputs(source: str, work: Path, rng: random.Random) -> tuple[Path, Path, dict, set]:
    """(damaged input, the same undamaged, origin map {(stem, i): g}, damaged g) in `work`."""
    damaged_root, clean_root = work / "in-damaged", work / "in-clean"
    origin, damaged = {}, set()
    g = 0
    if source == "terrascope-bench":
        return _write_parquet(work, rng)
    per_file = _fixture_records(source)
    share = N // len(per_file)
    for n, (name, (key, recs, top)) in enumerate(sorted(per_file.items())):
        count = share if n < len(per_file) - 1 else N - share * (len(per_file) - 1)
        items_clean, items_damaged = [], []
        for i in range(count):
            rec = copy.deepcopy(rng.choice(recs))
            if isinstance(rec, dict) and "id" in rec:
                rec["id"] = f"fz{g}"
            clean = json.dumps(rec, ensure_ascii=False).encode()
            items_clean.append(clean)
            if rng.random() < 0.35:
                kind = rng.choice(KINDS)
                damaged.add((g, kind))
                items_damaged.append(_damage(rec, kind, rng))
            else:
                items_damaged.append(clean)
            origin[(Path(name).with_suffix("").as_posix(), i)] = g
            g += 1
        for root, items in ((clean_root, items_clean), (damaged_root, items_damaged)):
            body = b"[\n" + b",\n".join(items) + b"\n]\n"
            if key is not None:  # an object holding the list: keep the other keys
                head = json.dumps({k: v for k, v in top.items() if k != key})[:-1].encode()
                body = (
                    head
                    + (b", " if len(top) > 1 else b"")
                    + json.dumps(key).encode()
                    + b": "
                    + body
                    + b"}"
                )
            path = root / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(body)
    inp = HERE / SOURCES[source][0]
    sub = "" if inp.is_dir() else inp.name
    return damaged_root / sub, clean_root / sub, origin, damaged


def _write_parquet(work: Path, rng: random.Random) -> tuple[Path, Path, dict, set]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pq.read_table(HERE / SOURCES["terrascope-bench"][0])
    rows = table.to_pylist()
    clean, bad, damaged, origin = [], [], set(), {}
    for g in range(N):
        row = copy.deepcopy(rng.choice(rows))
        clean.append(copy.deepcopy(row))
        origin[("bench", g)] = g
        if rng.random() < 0.35:
            kind = rng.choice(("bytes", "types", "huge", "truncate"))
            damaged.add((g, kind))
            col = rng.choice(["image", "question", "candidates", "answer", "task_type"])
            if kind == "bytes":  # garbage image bytes, or an image path leaving the root
                row["image"] = {"bytes": bytes(rng.randrange(256) for _ in range(64)),
                                "path": rng.choice(["x.png", "../../etc/passwd", None])}  # fmt: skip
            elif kind == "types":
                row[col] = None if col != "image" else {"bytes": None, "path": None}
            elif kind == "huge" and col != "image":
                row[col] = "y" * 200_000
            elif col != "image" and row[col]:
                row[col] = row[col][: rng.randrange(len(row[col]))]
        bad.append(row)
    for name, data in (("in-clean", clean), ("in-damaged", bad)):
        (work / name).mkdir(parents=True)
        pq.write_table(
            pa.Table.from_pylist(data, schema=table.schema), work / name / "bench.parquet"
        )
    return (
        work / "in-damaged" / "bench.parquet",
        work / "in-clean" / "bench.parquet",
        origin,
        damaged,
    )


def _origin_of(line: str, source: str, origin: dict) -> int:
    rest = json.loads(line)["id"][len(source) + 1 :]
    m = re.fullmatch(r"fz(\d+)", rest)
    if m:
        return int(m.group(1))
    stem, i = rest.split(":")[:2]
    return origin[(stem, int(i))]


@pytest.fixture(scope="module")
def processor(tiny_llm_dir):
    from skyeye_testing import make_tiny_model

    proc = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)[1]
    proc.image_processor.sar_wavelength = 5.405
    return proc


@pytest.mark.parametrize("source", sorted(SOURCES))
def test_damaged_records_are_counted_at_every_stage(source, tmp_path, monkeypatch, processor):
    from skyeye.data.dataset import InstructionDataset

    rng = random.Random(f"issue-15:{source}")
    monkeypatch.chdir(tmp_path)
    for name in {Path(SOURCES[source][1]).parts[0]}:
        (tmp_path / name).symlink_to(HERE / name)  # relative image paths, as users run it
    damaged_in, clean_in, origin, damaged = _write_inputs(source, tmp_path, rng)
    bad_g = {g for g, _ in damaged}
    converter = get_converter(source)
    images = Path(SOURCES[source][1])

    # convert: every record read is converted or skipped with a reason
    ref = run_conversion(converter, clean_in, images, Path("clean.jsonl"))
    rep = run_conversion(converter, damaged_in, images, Path(f"{source}.jsonl"))
    assert ref.read == rep.read == N
    assert rep.converted + sum(rep.skipped.values()) == N, rep.as_dict()
    n_bytes = sum(1 for _, k in damaged if k == "bytes")
    if source != "terrascope-bench":
        assert rep.skipped["non-UTF-8 bytes"] == n_bytes
        n_syntax = sum(1 for _, k in damaged if k == "syntax")
        assert rep.skipped["malformed record"] >= n_syntax
    lines = Path(f"{source}.jsonl").read_text().splitlines()
    assert len(lines) == rep.written
    by_origin = defaultdict(list)
    for line in lines:
        by_origin[_origin_of(line, source, origin)].append(line)
    assert len(by_origin) == rep.converted
    ref_by_origin = defaultdict(list)
    for line in Path("clean.jsonl").read_text().splitlines():
        line = line.replace('"clean_images/', f'"{source}_images/')  # embedded images' folder
        ref_by_origin[_origin_of(line, source, origin)].append(line)
    for g in set(range(N)) - bad_g:  # undamaged records convert exactly as without damage
        assert by_origin.get(g, []) == ref_by_origin.get(g, []), g

    # validate: every line is looked at; lines of undamaged records are valid
    v = validate_file(Path(f"{source}.jsonl"), root=tmp_path)
    assert v.lines == rep.written and v.valid + v.invalid == v.lines
    clean_lines = sum(len(by_origin[g]) for g in by_origin if g not in bad_g)
    assert v.valid >= clean_lines, v.table()

    # mix: bad lines added to its input are skipped by reason, all others are placed
    extra = [b'\xff\xfe{"id": 1}', b"not json", b"[1, 2, 3]"]
    with open(f"{source}.jsonl", "ab") as handle:
        handle.write(b"\n".join(extra) + b"\n" + (lines[0].encode()[:25] if lines else b"{"))
    Path("mix.yaml").write_text(
        f"seed: 3\nval_fraction: 0.1\nsources: [{{path: {source}.jsonl}}]\n"
    )
    m = mix(MixSpec.from_yaml(Path("mix.yaml")), Path("train.jsonl"))
    skipped = m.skipped[str(Path(f"{source}.jsonl"))]
    assert m.read[str(Path(f"{source}.jsonl"))] == rep.written + 4
    assert dict(skipped) == {
        "non-UTF-8 bytes": 1,
        "malformed record": 2,
        "not a record (id, images, turns)": 1,
    }
    assert m.train + m.val + m.duplicates == rep.written

    # the training Dataset: every record gives an example or a counted skip
    files = [Path("train.jsonl")] + ([Path("train.val.jsonl")] if m.val else [])
    ds = InstructionDataset(files, processor, image_root=tmp_path, max_length=2048)
    assert len(ds) == m.train + m.val
    problems = [ds.check(i) for i in range(len(ds))]
    examples = [ds[i] for i in range(len(ds))]
    loaded = sum(e is not None for e in examples)
    assert loaded + ds.errors_seen == len(ds)
    assert loaded >= sum(p is None for p in problems) - ds.errors_seen  # no silent loss
    assert all(e is None or e["input_ids"].shape[0] <= 2048 for e in examples)
