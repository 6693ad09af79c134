"""The MCP `change` tool: two local images of one place -> the measured change (readable answer,
areas, transitions, the change mask's GeoJSON), called by the mcp SDK's own stdio client; its
files read under the server's --allow-files like every tool's."""

from __future__ import annotations

import dataclasses

import pytest
from skyeye_testing import change_chat, make_tiny_model, two_dates, write_tiff
from test_mcp import call_over_stdio

from skyeye.mcp.server import McpConfig, SkyEyeTools


@pytest.fixture
def pair(tmp_path):
    """(before.tif, after.tif, disc area m²): a lake appears (`two_dates`), both files dated."""
    before, after, area = two_dates(nodata_rows=0)
    return (
        write_tiff(before, tmp_path / "before.tif"),
        write_tiff(after, tmp_path / "after.tif"),
        area,
    )


def test_change_tool_measures_the_change(tiny_llm_dir, pair, tmp_path):
    before, after, area = pair
    tools = SkyEyeTools(McpConfig(allow_files=tmp_path), change_chat(tiny_llm_dir))
    out = tools.change(str(before), str(after), dates=["2018-05-01", "2020-05-01"])
    assert out["answer"].startswith("Yes — ") and ", mask 1: water gained " in out["answer"]
    assert [i["datetime"] for i in out["images"]] == ["2018-05-01", "2020-05-01"]
    change = out["change"]
    assert abs(change["area_m2"] - area) / area < 0.1
    assert change["transitions"][0]["class"] == "water"
    assert change["geojson"]["geometry"]["type"] in ("Polygon", "MultiPolygon")
    lost = tools.change(str(before), str(after), "Where did water disappear?")
    assert lost["change"]["phrase"] == "lost water"
    with pytest.raises(ValueError, match="dates run backwards"):
        tools.change(str(before), str(after), dates=["2020-05-01", "2018-05-01"])
    with pytest.raises(ValueError, match="does not ask about change"):
        tools.change(str(before), str(after), "Is there water?")


def test_change_tool_reads_only_under_allow_files(tiny_llm_dir, pair, tmp_path):
    before, after, _ = pair
    allowed = tmp_path / "allowed"
    allowed.mkdir()
    tools = SkyEyeTools(McpConfig(allow_files=allowed), change_chat(tiny_llm_dir))
    with pytest.raises(ValueError, match="outside"):
        tools.change(str(before), str(after))


def test_sdk_client_calls_change_over_stdio(tiny_llm_dir, pair, tmp_path):
    """A tiny random model with a (random) change decoder, saved as a folder: the logic of the
    tool over the protocol, not the quality of the mask."""
    before, after, _ = pair
    model, processor = make_tiny_model(
        tiny_llm_dir,
        use_mask_head=True,
        mask_head_hidden_size=32,
        mask_decoder="hires",
        mask_change=True,
    )
    model.save_pretrained(tmp_path / "model", processor=processor)
    two, far = two_dates(nodata_rows=0)[1], tmp_path / "far.tif"
    write_tiff(
        dataclasses.replace(two, transform=two.transform @ two.transform.translation(500, 0)), far
    )
    names, (ok, apart) = call_over_stdio(
        str(tmp_path / "model"),
        [
            ("change", {"before": str(before), "after": str(after)}),
            ("change", {"before": str(before), "after": str(far)}),
        ],
    )
    assert "change" in names
    assert not ok.is_error, ok.content[0].text
    result = ok.structured_content
    assert result["answer"].startswith(("Yes — ", "No — "))
    assert result["change"]["phrase"] == "changed land cover"
    assert result["change"]["images"] == [0, 1]
    assert apart.is_error and "do not overlap" in apart.content[0].text
