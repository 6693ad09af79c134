"""The processes a job may run (`ask`, `analyze-scene`), their descriptions, and their inputs
checked at submission: unknown or mistyped inputs -> 400 naming the input; an image outside
``--allow-files`` -> 403; a VRT or other non-raster -> 400; a scene over ``--scene-max-pixels``
or an image over ``--max-pixels`` -> 413; all before the job is queued.

An image is a data URL (saved into the job's ``input/`` folder, so a job never holds its pixels
in its state file and a restarted server still has them), a ``file://`` URL or a path under
``--allow-files`` (absolute, or relative to that folder), or ``{"href": ...}`` with either.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from skyeye.errors import OutsideRootError, PixelLimitError, RasterReadError, ServeRequestError
from skyeye.io.policy import UNTRUSTED_GDAL_ENV, ReadPolicy, open_target
from skyeye.io.raster import check_request_source
from skyeye.serve.images import _decode_data_url

#: The band description of an image input (the chat's ``skyeye`` extension of an image part).
BAND_INPUTS = ("band_names", "wavelengths", "sensor")
#: analyze-scene's options (`skyeye.scene.SceneConfig` fields a client may set) -> JSON type.
SCENE_OPTIONS: dict[str, tuple[type, ...]] = {
    "window": (int,),
    "overlap": (int,),
    "batch": (int,),
    "gsd": (int, float),
    "bbox": (list,),
    "bbox_crs": (str,),
    "crs": (str,),
    "max_new_tokens": (int,),
    "force_answer": (str,),
}
_IMAGE_SCHEMA = {
    "description": "a data URL (data:image/tiff;base64,...), a file:// URL or a path under the "
    "server's --allow-files folder (a STAC item JSON there too for analyze-scene), or "
    '{"href": ...} with one of those',
    "schema": {"oneOf": [{"type": "string"}, {"type": "object", "required": ["href"]}]},
}
_BAND_SCHEMAS = {
    "band_names": {"schema": {"type": "array", "items": {"type": "string"}}, "minOccurs": 0},
    "wavelengths": {"schema": {"type": "array", "items": {"type": "number"}}, "minOccurs": 0},
    "sensor": {"schema": {"type": "string"}, "minOccurs": 0},
}
PROCESSES: dict[str, dict[str, Any]] = {
    "ask": {
        "id": "ask",
        "title": "Ask SkyEye",
        "description": "One question about one image; the answer with its masks (GeoJSON in "
        "EPSG:4326 with areas, a GeoTIFF per mask) and boxes.",
        "version": "1",
        "jobControlOptions": ["async-execute"],
        "inputs": {
            "image": _IMAGE_SCHEMA,
            "question": {"schema": {"type": "string"}},
            **_BAND_SCHEMAS,
        },
        "outputs": {
            "answer": {"schema": {"type": "object"}},
            "mask.geojson": {
                "schema": {"type": "string", "contentMediaType": "application/geo+json"}
            },
        },
    },
    "analyze-scene": {
        "id": "analyze-scene",
        "title": "Analyze whole scene",
        "description": "A whole scene window by window at its own resolution (skyeye.scene): "
        "one answer, the mask as a Cloud-Optimized GeoTIFF, polygons as GeoJSON and GeoPackage.",
        "version": "1",
        "jobControlOptions": ["async-execute"],
        "inputs": {
            "image": _IMAGE_SCHEMA,
            "prompt": {"schema": {"type": "string"}},
            **_BAND_SCHEMAS,
            **{
                k: {"schema": {"type": "integer" if v == (int,) else "number"}, "minOccurs": 0}
                for k, v in SCENE_OPTIONS.items()
                if k not in ("bbox", "bbox_crs", "crs", "force_answer")
            },
            "bbox": {"schema": {"type": "array", "items": {"type": "number"}}, "minOccurs": 0},
            "bbox_crs": {"schema": {"type": "string"}, "minOccurs": 0},
            "crs": {"schema": {"type": "string", "enum": ["4326", "native"]}, "minOccurs": 0},
            "force_answer": {"schema": {"type": "string"}, "minOccurs": 0},
        },
        "outputs": {
            "answer": {"schema": {"type": "object"}},
            "mask.tif": {"schema": {"type": "string", "contentMediaType": "image/tiff"}},
            "mask.geojson": {
                "schema": {"type": "string", "contentMediaType": "application/geo+json"}
            },
            "mask.gpkg": {
                "schema": {"type": "string", "contentMediaType": "application/geopackage+sqlite3"}
            },
        },
    },
}


def _bad(message: str, status: int = 400, **kw: Any) -> ServeRequestError:
    return ServeRequestError(message, status=status, param="inputs", **kw)


def process_or_404(process_id: str) -> dict[str, Any]:
    """The description of ``process_id``; 404 naming the processes there are."""
    if process_id not in PROCESSES:
        raise ServeRequestError(
            f"no process {process_id!r} here; the processes are {sorted(PROCESSES)}",
            status=404,
            kind="not_found_error",
            code="no-such-process",
        )
    return PROCESSES[process_id]


def _text(inputs: dict[str, Any], key: str) -> str:
    value = inputs.get(key)
    if not isinstance(value, str) or not value.strip():
        raise _bad(
            f"inputs.{key} is missing or empty: send the text to ask, e.g. 'Where is the water?'"
        )
    return value


def _bands(inputs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    names, waves, sensor = (inputs.get(k) for k in BAND_INPUTS)
    if names is not None:
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise _bad("inputs.band_names must be a list of strings, one per band")
        out["band_names"] = names
    if waves is not None:
        if (
            not isinstance(waves, list)
            or not waves
            or not all(
                isinstance(w, (int, float)) and not isinstance(w, bool) and math.isfinite(w)
                for w in waves
            )
        ):
            raise _bad("inputs.wavelengths must be a list of numbers in µm, one per band")
        out["wavelengths"] = [float(w) for w in waves]
    if sensor is not None:
        if not isinstance(sensor, str):
            raise _bad("inputs.sensor must be a sensor name such as 'sentinel-2'")
        out["sensor"] = sensor
    return out


def _scene_options(inputs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, kinds in SCENE_OPTIONS.items():
        if key not in inputs or inputs[key] is None:
            continue
        value: Any = inputs[key]
        if isinstance(value, bool) or not isinstance(value, kinds):
            raise _bad(f"inputs.{key} must be of type {' or '.join(k.__name__ for k in kinds)}")
        numbers: list[Any] = inputs[key] if key == "bbox" else []
        if key == "bbox" and (
            len(numbers) != 4
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in numbers)
        ):
            raise _bad("inputs.bbox must be [minx, miny, maxx, maxy] (four numbers)")
        out[key] = value
    from skyeye.errors import SceneError
    from skyeye.scene.config import SceneConfig  # its checks name the value at fault

    try:
        SceneConfig(**out)
    except SceneError as err:
        raise _bad(f"inputs: {err}") from None
    return out


def _image_ref(value: Any) -> str:
    if isinstance(value, dict):
        value = value.get("href")
    if not isinstance(value, str) or not value:
        raise _bad(
            "inputs.image is missing: send a data URL, a file:// URL or a path under the "
            "server's --allow-files folder"
        )
    return value


def parse_inputs(process_id: str, body: Any) -> dict[str, Any]:
    """The execution request's ``inputs`` checked for types and names (not yet the image's
    bytes or path): {"image": str, "question"/"prompt": str, "bands": {...}, "options": {...}}."""
    process = process_or_404(process_id)
    if not isinstance(body, dict) or not isinstance(body.get("inputs"), dict):
        raise _bad('the body must be a JSON object {"inputs": {...}}')
    unknown_top = sorted(set(body) - {"inputs", "outputs", "response", "subscriber"})
    if unknown_top:
        raise _bad(f"unknown field(s) {unknown_top} in the execution request; send 'inputs'")
    inputs = body["inputs"]
    unknown = sorted(set(inputs) - set(process["inputs"]))
    if unknown:
        raise _bad(
            f"unknown input(s) {unknown} for process {process_id!r}; its inputs are "
            f"{sorted(process['inputs'])}"
        )
    text_key = "question" if process_id == "ask" else "prompt"
    parsed: dict[str, Any] = {
        "image": _image_ref(inputs.get("image")),
        "text": _text(inputs, text_key),
        "bands": _bands(inputs),
        "options": _scene_options(inputs) if process_id == "analyze-scene" else {},
    }
    return parsed


def decode_upload(url: str) -> tuple[bytes, str]:
    """A data URL's bytes and file suffix (the chat's decoder); 400 naming what is wrong."""
    try:
        return _decode_data_url(url, "inputs.image")
    except ServeRequestError as err:
        err.param = "inputs"
        raise


def local_path(ref: str, root: Path | None) -> Path:
    """A ``file://`` URL or a path (absolute, or relative to ``root``) as a path to check; 400
    for other URLs, 403 when the server reads no files."""
    if root is None:
        raise _bad(
            "inputs.image: this server reads no files (start it with --allow-files DIR); send "
            "the image as a data URL instead",
            status=403,
            kind="permission_error",
        )
    if ref.startswith("file://"):
        parsed = urlparse(ref)
        if parsed.netloc not in ("", "localhost"):
            raise _bad("inputs.image: file:// URLs must be local paths")
        ref = unquote(parsed.path)
    elif "://" in ref:
        raise _bad(
            f"inputs.image: {urlparse(ref).scheme} URLs are not fetched by this server; send a "
            "data URL or a path under its --allow-files folder"
        )
    path = Path(ref)
    return path if path.is_absolute() else root / path


def check_source(source: Path, policy: ReadPolicy, label: str) -> list[Path]:
    """Every file the job will open for ``source`` (a file, band folder or STAC item) checked by
    ``policy`` (inside its root after symbolic links, a plain raster, declared size under its
    limit), without decoding a pixel; errors as 403 / 413 / 400 naming ``label``."""
    try:
        files = check_request_source(source, policy)
        for f in files:
            _check_declared_size(f, policy, label)
        return files
    except OutsideRootError:
        raise _bad(
            f"{label}: leads outside the folder this server may read (--allow-files); put the "
            "file (not a link to it) under that folder, or send it as a data URL",
            status=403,
            kind="permission_error",
        ) from None
    except PixelLimitError as err:
        raise _bad(
            str(err).replace(str(source), label), status=413, code="image_too_large"
        ) from None
    except (RasterReadError, OSError) as err:
        text = str(err).replace(str(source), label)
        if policy.root is not None:
            text = text.replace(str(policy.root), "the allowed folder")
        raise _bad(f"{label}: {text}" if not text.startswith(label) else text) from None


def _check_declared_size(path: Path, policy: ReadPolicy, label: str) -> None:
    """The header's width, height, bands and sample size against the policy's limit."""
    target, pil_format, driver = open_target(path, policy)
    if driver is not None:
        import numpy as np
        import rasterio
        from rasterio.errors import RasterioError

        try:
            with rasterio.Env(**UNTRUSTED_GDAL_ENV), rasterio.open(target, driver=driver) as ds:
                itemsize = max(np.dtype(d).itemsize for d in ds.dtypes)
                policy.check_size(ds.width, ds.height, ds.count, itemsize, label)
        except RasterioError as err:
            raise RasterReadError(f"{label}: not a readable raster ({err})") from None
        return
    from PIL import Image

    with Image.open(target, formats=[pil_format] if pil_format else None) as img:
        policy.check_size(img.width, img.height, len(img.getbands()), 1, label)
