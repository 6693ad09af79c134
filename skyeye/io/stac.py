"""STAC items as raster sources: which asset files hold the bands, their names and wavelengths.

A STAC Item JSON (read with pystac) is accepted wherever a raster path is: its assets are
resolved to local files (relative paths and ``file://`` hrefs; remote hrefs raise a clear
"cannot fetch" error, SkyEye reads offline), the bands are named by ``eo:bands`` common names
(else their names) with their centre wavelengths, SAR assets by their ``sar:polarizations``, and
the item's id and datetime travel with the image into the outputs.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from skyeye.errors import StacError

#: Asset roles that never hold the scene's pixels.
SKIP_ROLES = {"thumbnail", "overview", "metadata", "visual-thumbnail"}
RASTER_SUFFIXES = (".tif", ".tiff", ".jp2")


@dataclass
class StacScene:
    """What an item resolves to.

    source: one multi-band file, or the list of single-band files (one per band).
    band_names: one per file for single-band assets, one per band for a multi-band asset.
    wavelengths: centre wavelength (µm) by band name, for the bands that declare one.
    """

    source: Path | list[Path]
    band_names: list[str]
    wavelengths: dict[str, float] = field(default_factory=dict)
    scene_id: str | None = None
    datetime: str | None = None
    geometry: dict[str, Any] | None = None
    bbox: list[float] | None = None

    def wavelengths_of(self, names: list[str]) -> list[float] | None:
        """The item's wavelength (µm) of each band in `names`, or None unless it declares all."""
        known = [self.wavelengths.get(n) for n in names]
        return [float(w) for w in known if w is not None] if None not in known else None


def is_stac_file(path: str | os.PathLike) -> bool:
    """True for a ``.json`` file (a STAC Item or ItemCollection; checked when parsed)."""
    p = Path(path)
    return p.suffix.lower() == ".json" and p.is_file()


def _local_href(href: str, base: Path, label: str) -> Path:
    parsed = urlparse(href)
    if parsed.scheme in ("", "file") or (len(parsed.scheme) == 1 and os.name == "nt"):
        path = Path(unquote(parsed.path)) if parsed.scheme == "file" else Path(href)
        path = path if path.is_absolute() else base / path
        if not path.exists():
            raise StacError(f"{label}: asset file {path} does not exist: check the item's href")
        return path
    raise StacError(
        f"{label}: cannot fetch remote asset {href} (SkyEye reads local files only, offline): "
        "download it and point the item's href at the local copy"
    )


def _bands(asset: dict[str, Any]) -> list[dict[str, Any]]:
    # STAC 1.0 eo extension ("eo:bands") or STAC 1.1 common "bands" with "eo:" fields.
    return list(asset.get("eo:bands") or asset.get("bands") or [])


def _band_name(band: dict[str, Any]) -> str:
    return str(band.get("name") or band.get("common_name") or band.get("eo:common_name"))


def _centre(band: dict[str, Any]) -> float | None:
    value = band.get("center_wavelength", band.get("eo:center_wavelength"))
    return float(value) if value is not None else None


def _is_raster(asset: dict[str, Any]) -> bool:
    if SKIP_ROLES & set(asset.get("roles") or []):
        return False
    media = str(asset.get("type") or "")
    if media:
        return "tiff" in media or "jp2" in media
    return str(asset.get("href", "")).lower().endswith(RASTER_SUFFIXES)


def scene_from_item(
    item: dict[str, Any], base: Path, label: str, bands: list[str] | None = None
) -> StacScene:
    """Resolve one STAC Item (as a dict; relative hrefs are relative to ``base``).

    bands: keep only these single-band assets (band names or common names, e.g. ``["red",
    "green", "blue"]`` or ``["VV"]``); None keeps every band asset.
    """
    if item.get("type") != "Feature" or "assets" not in item:
        raise StacError(f"{label}: not a STAC Item (needs type 'Feature' and 'assets')")
    props = item.get("properties") or {}
    scene = dict(
        scene_id=item.get("id"),
        datetime=props.get("datetime") or props.get("start_datetime"),
        geometry=item.get("geometry"),
        bbox=item.get("bbox"),
    )
    rasters = {k: a for k, a in item["assets"].items() if isinstance(a, dict) and _is_raster(a)}
    multi = {k: a for k, a in rasters.items() if len(_bands(a)) > 1}
    if multi and not bands:
        key = next((k for k, a in multi.items() if "data" in (a.get("roles") or [])), None)
        key = key or max(multi, key=lambda k: len(_bands(multi[k])))
        asset = multi[key]
        names = [_band_name(b) for b in _bands(asset)]
        return StacScene(
            source=_local_href(asset["href"], base, label),
            band_names=names,
            wavelengths={
                n: w for n, b in zip(names, _bands(asset), strict=True) if (w := _centre(b))
            },
            **scene,
        )
    files, names, wavelengths = [], [], {}
    for key, asset in rasters.items():
        band_list = _bands(asset)
        pols = asset.get("sar:polarizations") or []
        if len(band_list) == 1:
            band = band_list[0]
            name, aliases = _band_name(band), {_band_name(band), str(band.get("common_name"))}
            if (w := _centre(band)) is not None:
                wavelengths[name] = w
        elif len(pols) == 1:
            name, aliases = str(pols[0]), {str(pols[0])}
        else:
            continue
        if bands and not ({a.lower() for a in aliases} & {b.lower() for b in bands}):
            continue
        files.append(_local_href(asset["href"], base, f"{label} asset {key!r}"))
        names.append(name)
    if not files:
        wanted = f" matching {bands}" if bands else ""
        raise StacError(
            f"{label}: no raster asset{wanted} with eo:bands or sar:polarizations: "
            "describe the bands in the item, or pass the raster file itself"
        )
    return StacScene(source=files, band_names=names, wavelengths=wavelengths, **scene)


def _load_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StacError(f"{path}: not a readable STAC JSON file: {err}") from None
    if not isinstance(data, dict):
        raise StacError(f"{path}: not a STAC Item or ItemCollection (a JSON object)")
    return data


def read_stac_item(path: str | os.PathLike, bands: list[str] | None = None) -> StacScene:
    """Resolve a STAC Item JSON file (validated by pystac) into its band files and metadata."""
    import pystac

    path = Path(path)
    data = _load_json(path)
    try:
        pystac.Item.from_dict(data, preserve_dict=True)
    except Exception as err:  # pystac raises several types for malformed items
        raise StacError(f"{path}: not a valid STAC Item: {err}") from None
    return scene_from_item(data, path.parent, str(path), bands)


def read_stac_items(path: str | os.PathLike) -> list[tuple[str, dict[str, Any]]]:
    """The items of a STAC ItemCollection (or of a single Item) file as (label, item dict).

    Relative hrefs stay relative to the file's folder (resolve with `scene_from_item`).
    """
    import pystac

    path = Path(path)
    data = _load_json(path)
    if data.get("type") == "Feature":
        return [(str(path), data)]
    try:
        pystac.ItemCollection.from_dict(data, preserve_dict=True)
    except Exception as err:
        raise StacError(f"{path}: not a valid STAC ItemCollection: {err}") from None
    return [(f"{path}#{item.get('id')}", item) for item in data.get("features", [])]
