"""Pieces of the skyeye-tiny recipe that run without training: band stacking and the stage
options (the validation's are in test_validation.py)."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from finetune.band_stack import stack_band_files


def _band(path, value: int, georef: bool) -> None:
    prof = dict(driver="GTiff", width=4, height=3, count=1, dtype="uint16")
    if georef:
        prof.update(crs="EPSG:32633", transform=from_origin(500000, 5800000, 10, 10))
    with rasterio.open(path, "w", **prof) as dst:
        dst.write(np.full((1, 3, 4), value, np.uint16))


def test_stack_band_files_takes_the_georeference_from_the_band_that_has_it(tmp_path):
    _band(tmp_path / "B01.tif", 1, georef=False)
    _band(tmp_path / "B02.tif", 2, georef=True)
    out = stack_band_files(tmp_path, "{band}.tif", ["B01", "B02"], tmp_path / "o" / "s.tif", 0)
    with rasterio.open(out) as ds:
        assert ds.count == 2 and ds.descriptions == ("B01", "B02")
        assert ds.crs.to_epsg() == 32633 and ds.transform.c == 500000 and ds.nodata == 0
        assert ds.read(2).max() == 2
    with pytest.raises(FileNotFoundError, match="B03.tif is missing"):
        stack_band_files(tmp_path, "{band}.tif", ["B01", "B03"], tmp_path / "x.tif")


def test_recipe_sections_become_the_stage_options():
    """The driver hands each recipe section to its stage's CLI: booleans as flags (argparse's
    BooleanOptionalAction rejects ``--x=True``), everything else as ``--key=value``."""
    from finetune.mask_stage import main as mask_stage
    from finetune.skyeye_tiny import cli_options

    opts = cli_options({"hires_ratios": 8, "hires_indices": True, "decoder": "hires", "x_y": False})
    assert opts == ["--hires-ratios=8", "--hires-indices", "--decoder=hires", "--no-x-y"]
    # The stage's parser takes them (a rejected option would exit before the data check).
    paths = ["--model", "m", "--data", "/nonexistent.jsonl", "--out", "o"]
    assert mask_stage([*paths, *cli_options({"hires_indices": True, "hires_ratios": 8})]) == 2
