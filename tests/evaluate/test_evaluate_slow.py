"""The CLI with the embedded skyeye-tiny on golden fixture records of every task (slow: the
real 135M LLM answers each question on the CPU)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from skyeye.evaluation.cli import main

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "instruct"
GOLDEN = FIXTURES / "golden"

CASES = [
    ("caption", "chatearthnet.jsonl", []),
    ("vqa", "skyeyegpt.jsonl", []),
    ("mcq", "earthmind-bench.jsonl", []),
    ("grounding", "skyeyegpt.jsonl", []),
    # tc-2 is a Sentinel-1 VV/VH pair: skyeye-tiny has no SAR placeholder, so give DOFA v2's.
    ("refseg", "terrascope.jsonl", ["--sar-wavelength", "5.405"]),
]


@pytest.mark.slow
@pytest.mark.parametrize(("task", "name", "extra"), CASES)
def test_cli_with_skyeye_tiny_writes_a_report(tmp_path, task, name, extra):
    out = tmp_path / f"{task}.json"
    argv = [
        "--model",
        "skyeye-tiny",
        "--data",
        str(GOLDEN / name),
        "--task",
        task,
        "--out",
        str(out),
        "--image-root",
        str(FIXTURES),
        "--limit",
        "2",
        "--max-new-tokens",
        "12",
        "--quiet",
        *extra,
    ]
    assert main(argv) == 0
    report = json.loads(out.read_text())
    assert report["counts"]["evaluated"] == len(report["samples"]) >= 1
    assert report["counts"]["selected"] <= 2
    assert report["settings"]["model"] == "skyeye-tiny"
    assert report["settings"]["llm_source"] == "smollm2-135m-instruct"
    assert all(s["prediction"] for s in report["samples"])  # the real LLM always says something
