"""``python -m instruct_data.from_rasters.render FILE --root DIR --id ID --out PNG``: a picture of
one conversation: the image quick-look, its mask / box overlay, and the text."""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from instruct_data.masks import decode_mask
from skyeye.io.raster import read_raster


def quicklook(data: np.ndarray, wavelengths: list | None) -> np.ndarray:
    """(C, H, W) -> (H, W, 3) uint8: true colour by wavelength, SAR as VV / VH / VV-VH, else
    the first bands; each channel stretched between its 2nd and 98th percentiles."""
    wl = [w if w is not None else -1.0 for w in (wavelengths or [])]
    if wl and all(w < 0 for w in wl):  # SAR
        vv, vh = data[0], data[min(1, len(data) - 1)]
        chans = [vv, vh, vv - vh]
    elif wl and any(w > 0 for w in wl):
        chans = [data[int(np.argmin([abs(w - t) for w in wl]))] for t in (0.665, 0.56, 0.49)]
    else:
        chans = [data[min(i, len(data) - 1)] for i in range(3)]
    out = []
    for c in chans:
        lo, hi = np.nanpercentile(c, [2, 98]) if np.isfinite(c).any() else (0.0, 1.0)
        out.append(np.clip((np.nan_to_num(c, nan=lo) - lo) / max(hi - lo, 1e-9), 0, 1))
    return (np.stack(out, -1) * 255).astype(np.uint8)


def render(rec: dict, root: Path, scale: int = 3, width_chars: int = 70) -> Image.Image:
    """Quick-look | overlay side by side (each ``scale`` x), the conversation text underneath."""
    im = rec["images"][0]
    path = im["path"] if isinstance(im["path"], str) else im["path"][0]
    r = read_raster(root / path)
    rgb = quicklook(r.data, im.get("wavelengths"))
    h, w = rgb.shape[:2]
    over = rgb.astype(np.float32)
    for t in rec["turns"]:
        for m in t.get("masks", []):
            mk = decode_mask(m["rle"])
            over[mk] = 0.45 * over[mk] + 0.55 * np.array([255, 0, 0])
    left = Image.fromarray(rgb).resize((w * scale, h * scale), Image.NEAREST)
    right = Image.fromarray(over.astype(np.uint8)).resize((w * scale, h * scale), Image.NEAREST)
    d = ImageDraw.Draw(right)
    for t in rec["turns"]:
        for b in t.get("boxes", []):
            x1, y1, x2, y2 = b["xyxy"]
            d.rectangle(
                [x1 * w * scale, y1 * h * scale, x2 * w * scale - 1, y2 * h * scale - 1],
                outline=(255, 255, 0),
                width=3,
            )
    lines = [
        f"{rec['id']}  [{rec['task']}, {im['modality']}, bands {','.join(im.get('band_names') or [])}]"
    ]
    for t in rec["turns"]:
        lines += textwrap.wrap(f"{t['role']}: {t['text']}", width_chars) or [""]
    lines += textwrap.wrap(
        "label source: " + rec.get("meta", {}).get("label_source", "?"), width_chars
    )
    pad = 8
    canvas = Image.new(
        "RGB", (2 * w * scale + 3 * pad, h * scale + 2 * pad + 14 * len(lines) + pad), "white"
    )
    canvas.paste(left, (pad, pad))
    canvas.paste(right, (2 * pad + w * scale, pad))
    dc = ImageDraw.Draw(canvas)
    for i, line in enumerate(lines):
        dc.text((pad, h * scale + 2 * pad + 14 * i), line, fill=(0, 0, 0))
    return canvas


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m instruct_data.from_rasters.render", description=__doc__
    )
    ap.add_argument("file", type=Path, help="conversations JSONL")
    ap.add_argument("--root", type=Path, required=True, help="folder image paths are relative to")
    ap.add_argument("--id", required=True, help="record id")
    ap.add_argument("--out", type=Path, required=True, help="PNG to write")
    ap.add_argument("--scale", type=int, default=3)
    args = ap.parse_args(argv)
    with open(args.file, encoding="utf-8") as f:
        rec = next((d for d in map(json.loads, f) if d["id"] == args.id), None)
    if rec is None:
        print(f"error: no record with id {args.id!r} in {args.file}")
        return 2
    render(rec, args.root, args.scale).save(args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
