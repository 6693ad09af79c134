"""Issue 15, data side: damaged bytes never lose the rest of the input (1), outputs are written
whole or not at all (2), band folders resolve the same everywhere (8), image paths stay inside
their root and validate opens what it calls valid (10)."""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from instruct_data.convert import get_converter, run_conversion
from instruct_data.convert.__main__ import main as convert_main
from instruct_data.mix import MixSpec, mix
from instruct_data.mix import main as mix_main
from instruct_data.validate import main as validate_main
from instruct_data.validate import validate_file
from skyeye.errors import ImagePathError, UnsafePathError
from skyeye.io.paths import resolve_image

REPO = Path(__file__).resolve().parents[2]
HERE = REPO / "tests" / "fixtures" / "instruct"
LLAVA = json.loads((HERE / "llava" / "geochat_instruct.json").read_text())
GOOD = LLAVA[0]  # converts to one conversation with llava/images


def _records(n: int, bad: set[int]) -> list[bytes]:
    """`n` copies of a good LLaVA record (ids r0..); those in `bad` hold a non-UTF-8 byte."""
    out = []
    for i in range(n):
        text = json.dumps(GOOD | {"id": f"r{i}"}).encode()
        if i in bad:
            text = text.replace(b"<image>", b"<image>\xff\xfe", 1)
        out.append(text)
    return out


# ---------------------------------------------------------------- item 1: damaged bytes


@pytest.mark.parametrize("shape", ["json-list", "jsonl"])
def test_non_utf8_records_are_skipped_and_the_rest_converted(tmp_path, shape):
    bad = {3, 50, 51, 170}
    recs = _records(200, bad)
    src = tmp_path / ("in.json" if shape == "json-list" else "in.jsonl")
    src.write_bytes(
        b"[\n" + b",\n".join(recs) + b"\n]\n" if shape == "json-list" else b"\n".join(recs) + b"\n"
    )
    rep = run_conversion(get_converter("llava"), src, HERE / "llava/images", tmp_path / "o.jsonl")
    assert rep.read == 200 and rep.converted == rep.written == 196
    assert dict(rep.skipped) == {"non-UTF-8 bytes": 4}
    ids = [json.loads(line)["id"] for line in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert ids == [f"llava:r{i}" for i in range(200) if i not in bad]


def test_a_broken_record_in_a_json_list_does_not_end_the_list(tmp_path):
    recs = _records(20, set())
    recs[5] = recs[5].replace(b'"conversations":', b'"conversations"', 1)  # no colon
    recs[9] = b'{"id": "x", "image": nul}'
    (tmp_path / "in.json").write_bytes(b"[" + b",".join(recs) + b"]")
    rep = run_conversion(
        get_converter("llava"), tmp_path / "in.json", HERE / "llava/images", tmp_path / "o.jsonl"
    )
    assert rep.read == 20 and rep.written == 18 and rep.skipped["malformed record"] == 2


def test_unreadable_or_cut_input_exits_2_naming_file_and_byte(tmp_path, capsys):
    (tmp_path / "out.jsonl").write_text("old\n")
    (tmp_path / "junk.json").write_bytes(b"\x89PNG not json at all")
    cut = tmp_path / "cut.json"
    cut.write_bytes(b"[" + b",".join(_records(10, set()))[:-40])
    for src, where in (
        (tmp_path / "junk.json", "junk.json: not JSON"),
        (cut, r"cut.json: .* byte \d+"),
    ):
        code = convert_main(
            [
                "--source",
                "llava",
                "--input",
                str(src),
                "--images",
                str(HERE / "llava/images"),
                "--out",
                str(tmp_path / "out.jsonl"),
            ]
        )
        errors = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error")]
        assert code == 2 and len(errors) == 1 and re.search(where, errors[0])
        assert (tmp_path / "out.jsonl").read_text() == "old\n"


def test_validate_counts_non_utf8_and_truncated_lines(tmp_path, monkeypatch):
    monkeypatch.chdir(HERE)
    good = (HERE / "golden" / "llava.jsonl").read_bytes().splitlines()
    data = tmp_path / "v.jsonl"
    data.write_bytes(
        b"\n".join([good[0], good[1].replace(b"image", b"im\xffage", 1), good[2][:30]])
    )
    rep = validate_file(data)
    assert (rep.lines, rep.valid, rep.invalid) == (3, 1, 2)
    assert rep.problems == {
        "line: non-UTF-N bytes (byte N)": 1,
        "line: invalid JSON (Unterminated string starting at)": 1,
    } or set(rep.problems) >= {"line: non-UTF-N bytes (byte N)"}
    assert validate_main([str(data)]) == 1


def test_mix_skips_bad_lines_by_reason_and_writes_the_rest(tmp_path, capsys):
    good = (HERE / "golden" / "llava.jsonl").read_bytes().splitlines()
    src = tmp_path / "a.jsonl"
    src.write_bytes(b"\n".join([good[0], b"\xff\xfe{}", good[1], b"[1, 2]", good[2][:40]]))
    spec = tmp_path / "mix.yaml"
    spec.write_text(f"sources: [{{path: {src}}}]\n")
    assert mix_main(["--spec", str(spec), "--out", str(tmp_path / "train.jsonl")]) == 0
    printed = capsys.readouterr().out
    assert "skipped malformed record: 1" in printed and "skipped non-UTF-8 bytes: 1" in printed
    rep = mix(MixSpec.from_yaml(spec), tmp_path / "t2.jsonl")
    assert rep.read[str(src)] == 5 and rep.train == 2
    assert dict(rep.skipped[str(src)]) == {
        "non-UTF-8 bytes": 1,
        "malformed record": 1,
        "not a record (id, images, turns)": 1,
    }
    assert len((tmp_path / "train.jsonl").read_text().splitlines()) == 2


# ---------------------------------------------------------------- item 2: atomic outputs


def _fsize_limit(limit: int):
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of a signal: a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    return apply


@pytest.mark.parametrize("tool", ["convert", "mix", "validate"])
def test_full_disk_is_one_line_and_keeps_the_previous_file(tmp_path, tool):
    src = tmp_path / "in.jsonl"
    src.write_bytes(b"\n".join(_records(400, set())) + b"\n")
    golden = (HERE / "golden" / "llava.jsonl").read_text() * 400
    (tmp_path / "g.jsonl").write_text(golden)
    (tmp_path / "mix.yaml").write_text(
        f"dedup: false\nsources: [{{path: {tmp_path / 'g.jsonl'}}}]\n"
    )
    out = tmp_path / "out.json"
    out.write_text("previous\n")
    args = {
        "convert": [
            "instruct_data.convert",
            "--source",
            "llava",
            "--input",
            str(src),
            "--images",
            str(HERE / "llava/images"),
            "--out",
            str(out),
        ],
        "mix": ["instruct_data.mix", "--spec", str(tmp_path / "mix.yaml"), "--out", str(out)],
        "validate": [
            "instruct_data.validate",
            str(tmp_path / "g.jsonl"),
            "--root",
            str(HERE),
            "--no-band-check",
            "--json",
            str(out),
        ],
    }[tool]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, "-m", *args],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        preexec_fn=_fsize_limit(300 if tool == "validate" else 20_000),
    )
    err = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and len(err) == 1 and "is full" in err[0]
    assert str(tmp_path) in err[0] and out.read_text() == "previous\n"


# ---------------------------------------------------------------- item 8: band folders


def _s1_folder(root: Path) -> Path:
    import rasterio

    folder = root / "bigearthnet-s1" / "S1A_IW_GRDH_patch_1"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for pol in ("VV", "VH"):
        with rasterio.open(
            folder / f"S1A_IW_GRDH_patch_1_{pol}.tif",
            "w",
            driver="GTiff",
            height=8,
            width=8,
            count=1,
            dtype="float32",
        ) as ds:
            ds.write(rng.normal(-15, 3, (1, 8, 8)).astype("float32"))
    return folder


@pytest.fixture(scope="module")
def processor(tiny_llm_dir):
    from skyeye_testing import make_tiny_model

    return make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)[1]


def test_sentinel1_band_folder_resolves_the_same_everywhere(tmp_path, monkeypatch, processor):
    from skyeye.data.dataset import InstructionDataset
    from skyeye.evaluation.samples import parse_sample

    monkeypatch.chdir(tmp_path)
    _s1_folder(tmp_path / "images")
    rec = {
        "id": "s1",
        "image": "bigearthnet-s1/S1A_IW_GRDH_patch_1",
        "conversations": [
            {"from": "human", "value": "<image>\nIs there water?"},
            {"from": "gpt", "value": "Yes."},
        ],
    }
    (tmp_path / "in.json").write_text(json.dumps([rec]))
    rep = run_conversion(
        get_converter("earthmind"), Path("in.json"), Path("images"), Path("o.jsonl")
    )
    assert rep.written == 1, rep.as_dict()
    out = json.loads(Path("o.jsonl").read_text())
    image = out["images"][0]
    assert image["path"] == "images/bigearthnet-s1/S1A_IW_GRDH_patch_1"
    assert image["modality"] == "sar" and image["band_names"] == ["VH", "VV"]  # file order
    v = validate_file(Path("o.jsonl"))
    assert v.valid == 1, v.table()
    processor.image_processor.sar_wavelength = 5.405  # what recipes set (data.sar_wavelength)
    ds = InstructionDataset(Path("o.jsonl"), processor, image_root=tmp_path, on_error="stop")
    assert ds.check(0) is None
    example = ds[0]
    assert example["pixel_values"][0].shape[0] == 2
    sample = parse_sample(out, 1, tmp_path, "vqa")
    assert sample.images[0].paths == [str(tmp_path / image["path"])]
    assert resolve_image(image["path"], tmp_path) == tmp_path / image["path"]


# ---------------------------------------------------------------- item 10: paths and opening


@pytest.mark.parametrize("path", ["/etc/passwd", "../../etc/passwd", "geochat/../../../etc/passwd"])
def test_paths_outside_the_root_are_refused_everywhere(tmp_path, monkeypatch, path, processor):
    from skyeye.data.dataset import InstructionDataset
    from skyeye.evaluation.samples import RecordError, parse_sample

    with pytest.raises(UnsafePathError):
        resolve_image(path, HERE / "llava/images")
    (tmp_path / "in.json").write_text(json.dumps([GOOD | {"image": path}]))
    rep = run_conversion(
        get_converter("llava"), tmp_path / "in.json", HERE / "llava/images", tmp_path / "o.jsonl"
    )
    assert rep.written == 0 and dict(rep.skipped) == {"image path outside the image root": 1}
    rec = json.loads((HERE / "golden" / "llava.jsonl").read_text().splitlines()[0])
    rec["images"][0]["path"] = path
    (tmp_path / "d.jsonl").write_text(json.dumps(rec) + "\n")
    v = validate_file(tmp_path / "d.jsonl", root=HERE)
    assert v.invalid == 1 and "outside the image root" in v.examples[0]
    ds = InstructionDataset(tmp_path / "d.jsonl", processor, image_root=HERE)
    assert "image root" in ds.check(0) or "absolute" in ds.check(0)
    assert ds[0] is None
    with pytest.raises(RecordError, match="outside the image root"):
        parse_sample(rec, 1, HERE, "vqa")


def test_absolute_paths_need_the_flag(tmp_path):
    image = HERE / "llava/images/geochat/g001.png"
    rec = json.loads((HERE / "golden" / "llava.jsonl").read_text().splitlines()[0])
    rec["images"][0]["path"] = str(image)
    (tmp_path / "d.jsonl").write_text(json.dumps(rec) + "\n")
    assert validate_file(tmp_path / "d.jsonl", root=tmp_path).invalid == 1
    assert validate_file(tmp_path / "d.jsonl", root=tmp_path, allow_absolute=True).valid == 1
    assert validate_main([str(tmp_path / "d.jsonl"), "--allow-absolute-paths"]) == 0
    (tmp_path / "in.json").write_text(json.dumps([GOOD | {"image": str(image)}]))
    args = [get_converter("llava"), tmp_path / "in.json", HERE / "llava/images", tmp_path / "o"]
    assert run_conversion(*args).written == 0
    assert run_conversion(*args, allow_absolute=True).written == 1


def test_validate_opens_every_image_and_refuses_fifos(tmp_path):
    rec = json.loads((HERE / "golden" / "chatearthnet.jsonl").read_text().splitlines()[0])
    assert rec["images"][0]["band_names"]
    for p in rec["images"][0]["path"]:
        (tmp_path / p).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / p).write_bytes(b"not a PNG at all")  # exists, has band_names: unreadable
    (tmp_path / "a.jsonl").write_text(json.dumps(rec) + "\n")
    rep = validate_file(tmp_path / "a.jsonl", root=tmp_path)
    assert rep.invalid == 1 and "unreadable image" in rep.examples[0]

    os.mkfifo(tmp_path / "fifo.png")
    rec = json.loads((HERE / "golden" / "llava.jsonl").read_text().splitlines()[0])
    rec["images"][0]["path"] = "fifo.png"
    (tmp_path / "b.jsonl").write_text(json.dumps(rec) + "\n")
    result: list = []
    worker = threading.Thread(
        target=lambda: result.append(validate_file(tmp_path / "b.jsonl", root=tmp_path)),
        daemon=True,
    )
    worker.start()
    worker.join(timeout=30)
    if worker.is_alive():  # unblock the reader the old code left hanging on the FIFO
        with open(tmp_path / "fifo.png", "wb"):
            pass
        pytest.fail("validate hangs on a FIFO")
    assert result[0].invalid == 1 and "not a regular file" in result[0].examples[0]
    with pytest.raises(ImagePathError, match="not a regular file"):
        resolve_image("fifo.png", tmp_path)


def test_union_of_corrupt_rles_is_refused_not_a_hang():
    # Found by the fuzz test: pycocotools looped forever merging these (and can crash on others).
    from instruct_data.masks import union_rles

    with pytest.raises(ValueError, match="cover 24 pixels"):
        union_rles([{"size": [8, 8], "counts": "04400N2"}, {"size": [8, 8], "counts": "<image>"}])
