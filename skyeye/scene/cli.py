"""`python -m skyeye.scene --image SCENE --prompt "..." --out DIR`: a whole scene, window by window,
into one georeferenced answer (mask COG, polygons GeoJSON/GeoPackage, preview PNG, answer.json).
With `--image BEFORE --image AFTER [--date D1 --date D2]`: what changed between two dates, on
the first image's grid (change COG, polygons with areas, transitions per class; a model with a
change decoder).

Prints the scene-level answer on stdout and the files written on stderr; exit 2 with one line
for bad input (unreadable scene, bbox outside it, window smaller than the tower's patch, an
output folder another run is writing, a full disk: finished windows are kept). A partial or
finished run of another prompt, model, settings or source file in --out is computed again
(the log says what differed); a photo (PNG/JPEG) runs on pixel coordinates, sensor "rgb".
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from skyeye.constants import DTYPE_NAMES, torch_dtype
from skyeye.logs import configure_logging, silence_library_warnings
from skyeye.scene.source import SCENE_CACHE_MIB

logger = logging.getLogger(__name__)


def _bbox(text: str) -> list[float]:
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise argparse.ArgumentTypeError(
            f"--bbox {text!r}: give minx,miny,maxx,maxy (four comma-separated numbers)"
        )
    return values


def _floats(text: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--wavelengths {text!r}: give numbers in µm, comma-separated (0.49,0.56,0.665)"
        ) from None


def build_parser() -> argparse.ArgumentParser:
    from skyeye.scene.config import DEFAULT_BATCH, DEFAULT_OVERLAP, DEFAULT_WINDOW

    p = argparse.ArgumentParser(prog="python -m skyeye.scene", description=__doc__)
    p.add_argument("--model", default="skyeye-tiny", help="bundled model, model folder or hub id")
    p.add_argument(
        "--image",
        required=True,
        action="append",
        help="scene: raster file or band-per-file folder; twice (before, after) for what "
        "changed between two dates, on the first image's grid",
    )
    p.add_argument(
        "--date",
        action="append",
        default=None,
        help="with two --image: the acquisition date (YYYY-MM-DD) of each, in order (default: "
        "the files' own)",
    )
    p.add_argument("--prompt", required=True, help="what to find, asked about every window")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--gsd", type=float, default=None, help="output pixel size (default: native)")
    p.add_argument("--window", type=int, default=DEFAULT_WINDOW, help="window side in pixels")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help="window overlap in pixels")
    p.add_argument("--batch", type=int, default=DEFAULT_BATCH, help="windows per model call")
    p.add_argument("--bbox", type=_bbox, default=None, help="minx,miny,maxx,maxy to analyse")
    p.add_argument("--bbox-crs", default=None, help="EPSG code of --bbox (default: the scene's)")
    p.add_argument("--crs", choices=["4326", "native"], default="4326", help="GeoJSON CRS")
    p.add_argument(
        "--sensor",
        action="append",
        default=None,
        help="sensor of the scene, both dates of a pair (e.g. sentinel-2); once",
    )
    p.add_argument(
        "--wavelengths",
        type=_floats,
        action="append",
        default=None,
        help="band centre wavelengths in µm, comma-separated, one per band (e.g. Landsat "
        "SWIR1,NIR,red,green: 1.65,0.835,0.66,0.56) for files whose bands are not named, both "
        "dates of a pair; once",
    )
    p.add_argument("--max-new-tokens", type=int, default=64, help="longest answer per window")
    p.add_argument(
        "--force-answer",
        default=None,
        metavar="TEXT",
        help="skip generation: every window's answer is TEXT (e.g. '<p>water</p> [SEG]'), its "
        "masks decoded in one forward pass per batch",
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", *DTYPE_NAMES],
        help="weights dtype; auto = float32, with the LLM in bfloat16 where bfloat16 matrix "
        "products are fast (GPUs, CPUs with AVX512-BF16/AMX): the windows' prefill ~3x faster",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch CPU threads (default: torch's choice)"
    )
    p.add_argument(
        "--read-threads",
        type=int,
        default=None,
        help="GDAL decoding threads of the scene's reads (default: every core)",
    )
    p.add_argument(
        "--gdal-cache-mib",
        type=int,
        default=SCENE_CACHE_MIB,
        help=f"GDAL block cache in MiB (default {SCENE_CACHE_MIB})",
    )
    p.add_argument(
        "--change-context",
        type=float,
        default=0.25,
        help="two dates: windows whose change covers at least this share are seen again over "
        "twice their size at half resolution and the masks merged (default 0.25; 0: off)",
    )
    p.add_argument("--restart", action="store_true", help="discard a partial run in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--verbose", action="store_true", help="log progress to stderr")
    return p


def check_before_loading(images: Sequence[str], model: str, config: Any) -> None:
    """Read each image small and run the model's image processor on it (bands, wavelengths,
    the SAR placeholder), so that a bad image fails with its one line in a second, before the
    model loads and before anything is written under --out (a model named by a hub id that is
    not cached yet is checked by the run itself)."""
    from skyeye.bundled import resolve_model_folder
    from skyeye.chat.loading import check_images
    from skyeye.processing.image_processor import SkyEyeImageProcessor

    local = Path(model)
    if not local.is_dir():
        try:
            local = resolve_model_folder(model)
        except Exception:  # noqa: BLE001  (a hub id offline: the run says what is missing)
            return
    if not (local / "preprocessor_config.json").is_file():
        return
    processor = SkyEyeImageProcessor.from_pretrained(str(local))
    kwargs = {"sensor": config.sensor, "wavelengths": config.wavelengths}
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    check_images(images, processor, read_size=64, read_kwargs=[kwargs] * len(images))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    import torch

    from skyeye.errors import SkyEyeError
    from skyeye.io.gdal import ReadOptions
    from skyeye.scene.config import SceneConfig
    from skyeye.scene.pipeline import analyze_scene

    try:
        for option in ("sensor", "wavelengths"):
            given = getattr(args, option)
            if given and len(given) > 1:
                # Appended, not overwritten: a second value (one per date, as the chat takes
                # them) was silently the only one used.
                raise ValueError(
                    f"--{option} given {len(given)} times: skyeye.scene reads every image with "
                    "one, so give it once (both dates need the same bands; for dates with "
                    "different bands use python -m skyeye.chat)"
                )
            setattr(args, option, given[0] if given else None)
        if args.window < 1:
            raise ValueError(f"--window must be positive, got {args.window}")
        if args.threads:
            torch.set_num_threads(args.threads)
        if args.read_threads is not None and args.read_threads < 1:
            raise ValueError(f"--read-threads must be at least 1, got {args.read_threads}")
        dtype = "auto" if args.dtype == "auto" else torch_dtype(args.dtype)
        silence_library_warnings(args.verbose)
        config = SceneConfig(
            gsd=args.gsd,
            window=args.window,
            overlap=args.overlap,
            batch=args.batch,
            bbox=args.bbox,
            bbox_crs=args.bbox_crs,
            crs=args.crs,
            resume=not args.restart,
            progress=not args.no_progress,
            max_new_tokens=args.max_new_tokens,
            force_answer=args.force_answer,
            device=args.device,
            dtype=dtype,
            sensor=args.sensor,
            wavelengths=args.wavelengths,
            read_options=ReadOptions(threads=args.read_threads, cache_mib=args.gdal_cache_mib),
            change_context=args.change_context,
        )
        if len(args.image) > 2:
            raise ValueError(
                f"{len(args.image)} --image given: give one scene, or two dates (before, after)"
            )
        if args.date and len(args.image) != 2:
            raise ValueError("--date is for two --image (before, after): drop it or add an image")
        check_before_loading(args.image, args.model, config)
        if len(args.image) == 2:
            from skyeye.io.dates import parse_user_date
            from skyeye.scene.change_pipeline import analyze_scene_pair

            dates = [parse_user_date(d) for d in args.date] if args.date else None
            before, after = args.image
            result = analyze_scene_pair(
                before, after, args.prompt, args.out, config, dates=dates, model=args.model
            )
        else:
            result = analyze_scene(args.image[0], args.prompt, args.out, config, model=args.model)
    except (SkyEyeError, ValueError, OSError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(result.text)
    earlier = result.windows_total - result.windows_run - result.windows_skipped
    print(
        f"(windows: {result.windows_total} in the scene, {result.windows_run} run now, "
        f"{earlier} from an earlier run of this command, {result.windows_skipped} all nodata)",
        file=sys.stderr,
    )
    for path in result.paths.values():
        if path.is_file():  # no GeoJSON for a scene without CRS (a photo)
            print(f"(written: {path})", file=sys.stderr)
    return 0
