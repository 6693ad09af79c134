"""One reading of a record's image (`skyeye.data.record_image`): the training dataset and the
vision stage give the model the same pixels and wavelengths for the same record."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from finetune.vision_stage import TileBank, collect_targets
from skyeye.data.dataset import InstructionDataset
from skyeye.data.record_image import read_record_image
from skyeye.errors import UnsafePathError
from skyeye.io.raster import read_raster

BANDS = Path(__file__).resolve().parents[1] / "fixtures" / "io" / "s2_bands"
SAR_PLACEHOLDER = 5.405


@pytest.fixture
def root(tmp_path) -> Path:
    """Images of every kind a record names: a band folder, a list of band files, a list of
    multi-band PNGs (named by the record) and a SAR rendering without band names."""
    shutil.copytree(BANDS, tmp_path / "folder")
    (tmp_path / "listed").mkdir()
    for band in ("B04", "B03", "B02"):
        shutil.copy(BANDS / f"T33UUU_20170216T102101_{band}.tif", tmp_path / "listed")
    rng = np.random.default_rng(0)
    for name in ("rgb", "nir", "sar"):
        pixels = rng.integers(0, 255, (40, 40, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
    return tmp_path


IMAGES = {
    "band folder": {"path": "folder"},
    "list of band files": {
        "path": [f"listed/T33UUU_20170216T102101_{b}.tif" for b in ("B04", "B03", "B02")]
    },
    "list of PNGs": {
        "path": ["rgb.png", "nir.png"],
        "band_names": ["B04", "B03", "B02", "B08", "B05", "B06"],
        "wavelengths": [0.665, 0.56, 0.49, 0.842, 0.705, 0.74],
    },
    "SAR rendering": {"path": "sar.png", "modality": "sar"},
}


def _record(image: dict) -> dict:
    return {
        "id": "r0",
        "task": "caption",
        "images": [image],
        "turns": [
            {"role": "user", "text": "<image>\ndescribe this image ."},
            {"role": "assistant", "text": "fields ."},
        ],
    }


@pytest.mark.parametrize("kind", list(IMAGES))
def test_the_dataset_and_the_vision_stage_read_a_record_alike(tiny_model, root, kind):
    _, processor = tiny_model
    processor.image_processor.sar_wavelength = SAR_PLACEHOLDER
    data = root / "train.jsonl"
    data.write_text(json.dumps(_record(IMAGES[kind])) + "\n")
    example = InstructionDataset(data, processor, image_root=root, on_error="stop")[0]
    bank = TileBank(collect_targets(data), root, processor, classes=["water"])
    assert len(bank.items) == 1, f"the vision stage skipped the {kind}"
    item = bank.items[0]
    # The vision stage keeps its pixels in float16 (its bank of tiles is held in memory).
    assert torch.equal(item["pixels"], example["pixel_values"][0].to(torch.float16))
    assert torch.equal(item["waves"], example["wavelengths"][0])
    if kind == "SAR rendering":
        assert item["waves"].tolist() == pytest.approx([SAR_PLACEHOLDER] * 3)


def test_a_band_folder_is_read_as_read_raster_reads_it(root):
    image = read_record_image({"path": "folder"}, root, max_size=32)
    reference = read_raster(str(root / "folder"), max_size=32)
    assert image.band_names == reference.band_names == ["B02", "B03", "B04", "B05", "B08", "B11"]
    assert np.array_equal(image.data, reference.data, equal_nan=True)


def test_record_paths_stay_under_the_root(root):
    with pytest.raises(UnsafePathError):
        read_record_image({"path": "../outside.png"}, root)
    with pytest.raises(UnsafePathError):
        read_record_image({"path": str(root / "rgb.png")}, root)
    absolute = read_record_image({"path": str(root / "rgb.png")}, root, allow_absolute=True)
    assert absolute.data.shape == (3, 40, 40)


def test_a_record_naming_the_rgb_sensor_is_read_as_a_photo(tiny_model, root):
    # An 8-bit photo saved as a float R, G, B tile (as the change data's AirChange tiles are):
    # its band names alone get the per-band stretch; naming the sensor gets a photo's /255.
    import rasterio

    _, processor = tiny_model
    photo = read_raster(str(root / "rgb.png"))
    profile = dict(driver="GTiff", width=40, height=40, count=3, dtype="float32")
    with rasterio.open(root / "tile.tif", "w", **profile) as dst:
        dst.write(photo.data.astype(np.float32))
    tile = {"path": "tile.tif", "band_names": ["R", "G", "B"], "wavelengths": [0.665, 0.56, 0.49]}
    scaling = processor.image_processor.scaling_for
    named = read_record_image({**tile, "sensor": "rgb"}, root)
    assert scaling(named.sensor, named.data) == scaling(photo.sensor, photo.data) == "uint8"
    plain = read_record_image(tile, root)
    assert scaling(plain.sensor, plain.data) == "minmax"

    def pixels(image: dict) -> torch.Tensor:
        data = root / "one.jsonl"
        data.write_text(json.dumps(_record(image)) + "\n")
        example = InstructionDataset(data, processor, image_root=root, on_error="stop")[0]
        return example["pixel_values"][0]

    assert not torch.allclose(pixels({**tile, "sensor": "rgb"}), pixels(tile), atol=0.05)
