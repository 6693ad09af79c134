"""`python -m skyeye.mcp` answered through the mcp SDK's own stdio client; the tools' logic."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest
from skyeye_testing import make_tiny_model, segmenting_chat

from skyeye.chat.readable import render_readable
from skyeye.mcp.server import McpConfig, SkyEyeTools

REPO = Path(__file__).resolve().parents[2]
S2 = REPO / "examples" / "sentinel2_berlin_l1c.tif"


def call_over_stdio(model: str, calls: list[tuple[str, dict]]) -> tuple[list[str], list]:
    """Start the server as a subprocess, list its tools and make ``calls`` with the SDK client."""
    from mcp import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "skyeye.mcp", "--model", model, "--max-new-tokens", "24"],
        cwd=str(REPO),
        env={"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"},
    )

    async def run():
        async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
            await session.initialize()
            names = [t.name for t in (await session.list_tools()).tools]
            return names, [await session.call_tool(name, args) for name, args in calls]

    return asyncio.run(run())


@pytest.fixture
def tiny_folder(tiny_llm_dir, tmp_path):
    model, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    model.save_pretrained(tmp_path / "model", processor=processor)
    return tmp_path / "model"


def test_sdk_client_calls_segment_over_stdio(tiny_folder):
    names, (ok, missing) = call_over_stdio(
        str(tiny_folder),
        [
            ("segment", {"path": str(S2), "target": "lake"}),
            ("segment", {"path": str(S2.with_name("nope.tif")), "target": "lake"}),
        ],
    )
    assert names == ["describe", "ask", "segment", "change", "analyze_scene"]
    assert not ok.is_error
    result = ok.structured_content
    assert result["answer"] and result["image"]["crs"] == "EPSG:32633"
    assert result["image"]["bands"][:2] == ["B01", "B02"] and result["image"]["size"] == [512, 512]
    assert isinstance(result["masks"], list)
    assert missing.is_error and "nope.tif: no such file" in missing.content[0].text


def test_segment_returns_geojson_in_epsg4326_and_areas(tiny_llm_dir):
    tools = SkyEyeTools(McpConfig(), segmenting_chat(tiny_llm_dir))
    result = tools.segment(str(S2), "lake")
    feature = result["masks_geojson"]["features"][0]
    lon, lat = feature["geometry"]["coordinates"][0][0][0]
    assert 12.6 < lon < 12.8 and 52.4 < lat < 52.6
    assert feature["properties"]["area_m2"] > 0
    assert result["total_area_m2"] == pytest.approx(feature["properties"]["area_m2"])
    # the answer reads as a sentence naming its mask; the model's grammar stays in raw
    assert "measured on the mask" in result["raw"] and "of the valid pixels" in result["answer"]
    assert result["answer"] == render_readable(result["raw"]) != result["raw"]
    with pytest.raises(ValueError, match="say what to segment"):
        tools.segment(str(S2), " ")


def test_analyze_scene_tool_runs_the_whole_scene_pipeline(tiny_llm_dir, tmp_path):
    tools = SkyEyeTools(McpConfig(), segmenting_chat(tiny_llm_dir))
    item = REPO / "examples" / "sentinel2_berlin_l1c.stac.json"
    summary = tools.analyze_scene(str(item), "segment the lake", str(tmp_path / "out"))
    assert summary["answer"] and summary["scene"]["datetime"] == "2017-02-16T10:21:01Z"
    assert summary["scene"]["id"].startswith("S2A_MSIL1C_20170216T102101")
    assert any(f.endswith("mask.tif") for f in summary["files"])


@pytest.mark.slow
def test_embedded_model_segments_the_river_over_stdio():
    _, (reply,) = call_over_stdio(
        "skyeye-tiny", [("segment", {"path": str(S2), "target": "river"})]
    )
    result = reply.structured_content
    assert not reply.is_error and result["masks_geojson"]["features"]
    assert result["total_area_m2"] > 0
    assert os.path.basename(result["image"]["path"]) == S2.name


def test_hostile_files_are_refused_with_a_reason_over_stdio(tiny_folder, tmp_path):
    from hostile_inputs import listener, vrt_over
    from PIL import Image

    bomb = tmp_path / "bomb.png"
    Image.new("1", (20000, 20000)).save(bomb)  # 400 MP declared, a few KB on disk
    with listener() as (url, seen):
        vrt = tmp_path / "remote.vrt"
        vrt.write_text(vrt_over(f"/vsicurl/{url}/x.tif"))
        _, (remote, big) = call_over_stdio(
            str(tiny_folder),
            [("describe", {"path": str(vrt)}), ("describe", {"path": str(bomb)})],
        )
        assert seen == []
    assert remote.is_error and "VRT" in remote.content[0].text
    assert big.is_error and "MP" in big.content[0].text


def test_allow_files_keeps_tools_and_scene_outputs_inside_the_folder(tiny_llm_dir, tmp_path):
    from skyeye.errors import OutsideRootError

    root = tmp_path / "root"
    root.mkdir()
    tools = SkyEyeTools(McpConfig(allow_files=root), segmenting_chat(tiny_llm_dir))
    with pytest.raises(OutsideRootError):
        tools.describe(str(S2))
    (root / "s2.tif").symlink_to(S2)
    with pytest.raises(OutsideRootError):
        tools.describe(str(root / "s2.tif"))
    with pytest.raises(OutsideRootError):
        tools.analyze_scene(str(root / "s2.tif"), "segment the lake", str(tmp_path / "out"))
