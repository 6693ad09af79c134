"""Benchmark: the "hires" mask decoder against the light one, per mask at 512 x 512, and the chat.

    python bench/mask_decoder.py [--threads 1] [--repeats 5] [--size 512] [--no-chat] [--json]
    python bench/mask_decoder.py --no-chat --device cuda [--dtype bfloat16]   # on a GPU

1. Decoder alone, each in a fresh subprocess (so peak memory is its own): skyeye-tiny's shapes
   (LLM width 576, tower width 256 on a 16 x 16 patch grid, decoder width 128, ``--ratios`` band
   ratios and, with ``--indices``, the spectral-index features in the hires one), one ``[SEG]``
   decoded into a ``size`` x ``size`` mask of a 13-band image; median wall time of ``repeats``
   calls after a warm-up, and the peak RSS (VmHWM) rise over the calls.
2. Chat one-shot (``ChatSession.ask`` on ``examples/sentinel2_berlin_l1c.tif``, "Show me where
   the water is in this image with a mask."), interleaved repeats in one process. With
   ``--light-model FOLDER`` (a model with the light decoder, e.g. the skyeye-tiny shipped before
   the hires retrain: ``git archive <commit> skyeye/models/skyeye-tiny | tar -x -C /tmp/old``;
   the bundled models' folder was ``skyeye/models`` before issue 27, ``skyeye/bundled`` after):
   that folder against ``--model`` (default the shipped skyeye-tiny, hires), i.e. today's chat vs
   the one before; the answers may differ. Without it: ``--model`` (light) against the same model
   with its head turned into the hires decoder (``finetune.mask_stage.to_hires``), same answer.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "sentinel2_berlin_l1c.tif"
PROMPT = "Show me where the water is in this image with a mask."

_CHILD = """
import json, statistics, sys, time
from types import SimpleNamespace
sys.path.insert(0, {repo!r})
import torch
torch.set_num_threads({threads})
from skyeye.modeling.mask_decoders import get_mask_decoder

def peak_rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

config = SimpleNamespace(text_config=SimpleNamespace(hidden_size=576),
                         vision_config=SimpleNamespace(hidden_size=256),
                         mask_head_hidden_size=128, mask_head_layers=2, mask_hires_dim=8,
                         mask_hires_ratios={ratios}, mask_hires_indices={indices})
torch.manual_seed(0)
head = get_mask_decoder({name!r})(config).eval()
seg, vis = torch.randn(1, 576), torch.randn(1, 256, 256)
size = ({size}, {size})
kwargs = {{}}
if {name!r} == "hires":
    kwargs = dict(pixels=[torch.randn(13, *size)],
                  wavelengths=[torch.linspace(0.44, 2.19, 13)])
device, dtype = torch.device({device!r}), getattr(torch, {dtype!r})
with torch.no_grad():
    reference = head(seg, vis, (16, 16), size, **kwargs) if device.type != "cpu" else None
head = head.to(device, dtype)
seg, vis = seg.to(device, dtype), vis.to(device, dtype)
if kwargs:
    kwargs["pixels"] = [x.to(device, dtype) for x in kwargs["pixels"]]
def sync():
    if device.type == "cuda":
        torch.cuda.synchronize()
rss0 = peak_rss_mib()
if device.type == "cuda":
    torch.cuda.reset_peak_memory_stats()
    mem0 = torch.cuda.memory_allocated()
times = []
with torch.no_grad():
    for i in range({repeats} + 1):
        sync()
        t = time.perf_counter()
        out = head(seg, vis, (16, 16), size, **kwargs)
        sync()
        if i:
            times.append(time.perf_counter() - t)
row = {{"decoder": {name!r}, "device": str(device), "dtype": {dtype!r},
        "seconds": statistics.median(times), "peak_rise_mib": peak_rss_mib() - rss0,
        "shape": list(out.shape), "parameters": sum(p.numel() for p in head.parameters())}}
if device.type == "cuda":
    row["device_peak_rise_mib"] = (torch.cuda.max_memory_allocated() - mem0) / 2**20
    row["device_name"] = torch.cuda.get_device_name(device)
if reference is not None:
    # The same weights and inputs on the CPU in float32: do the masks agree pixel for pixel?
    out = out.float().cpu()
    row["max_abs_logit_diff_vs_cpu"] = (out - reference).abs().max().item()
    row["mask_agreement_vs_cpu"] = ((out > 0) == (reference > 0)).float().mean().item()
print(json.dumps(row))
"""


def decoder_run(
    name: str,
    size: int,
    repeats: int,
    threads: int,
    device: str = "cpu",
    dtype: str = "float32",
    ratios: int = 8,
    indices: bool = False,
) -> dict:
    code = _CHILD.format(
        ratios=ratios,
        indices=indices,
        repo=str(REPO),
        name=name,
        size=size,
        repeats=repeats,
        threads=threads,
        device=device,
        dtype=dtype,
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def chat_run(
    repeats: int, threads: int, model_name: str = "skyeye-tiny", light: str | None = None
) -> dict:
    import torch

    torch.set_num_threads(threads)
    sys.path.insert(0, str(REPO))
    from finetune.mask_stage import to_hires
    from skyeye.chat.session import ChatSession, GenerationSettings
    from skyeye.modeling.model import SkyEyeForConditionalGeneration
    from skyeye.processing.processor import SkyEyeProcessor

    sessions = {}
    for name in ("light", "hires"):
        source = light if (light and name == "light") else model_name
        model = SkyEyeForConditionalGeneration.from_pretrained(
            source, dtype=torch.bfloat16, merge_adapter=True
        )
        processor = SkyEyeProcessor.from_pretrained(source)
        is_hires = getattr(model.mask_head, "needs_pixels", False)
        if name == "hires" and not is_hires:
            to_hires(model, processor, GenerationSettings().read_size)
        elif name == "light" and is_hires:
            raise SystemExit(f"{source} has a hires decoder: pass a light model as --light-model")
        sessions[name] = (model, processor)
    times: dict[str, list[float]] = {"light": [], "hires": []}
    answers, grids = {}, {}
    for i in range(repeats + 1):
        for name, (model, processor) in sessions.items():
            session = ChatSession(model, processor)
            t = time.perf_counter()
            session.add_image(EXAMPLE)
            reply = session.ask(PROMPT)
            if i:
                times[name].append(time.perf_counter() - t)
            answers[name] = reply.text
            grids[name] = [list(m.shape) for m in reply.masks]
    light, hires = (statistics.median(times[n]) for n in ("light", "hires"))
    return {
        "light_seconds": light,
        "hires_seconds": hires,
        "ratio": hires / light,
        "answers": answers,
        "mask_grids": grids,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--size", type=int, default=512)
    p.add_argument("--no-chat", action="store_true")
    p.add_argument(
        "--ratios",
        type=int,
        default=8,
        help="band-ratio features of the hires decoder (skyeye-tiny's recipe: 8; 0 = none)",
    )
    p.add_argument(
        "--indices",
        action="store_true",
        help="spectral-index features (NDWI, MNDWI, NDVI, NDBI, brightness) in the hires decoder",
    )
    p.add_argument("--model", default="skyeye-tiny", help="model of the chat run (hires, or light)")
    p.add_argument("--light-model", default=None, help="light-decoder model folder to compare with")
    p.add_argument("--json", action="store_true")
    p.add_argument(
        "--device",
        default="cpu",
        help="decoders only: cpu or cuda (then checked "
        "against the same decoder on the CPU in float32)",
    )
    p.add_argument(
        "--dtype",
        default="float32",
        choices=["float32", "bfloat16"],
        help="decoders only: the weights' and inputs' dtype",
    )
    args = p.parse_args(argv)
    rows = [
        decoder_run(
            n,
            args.size,
            args.repeats,
            args.threads,
            args.device,
            args.dtype,
            args.ratios,
            args.indices,
        )
        for n in ("light", "hires")
    ]
    result = {"decoders": rows}
    result["time_ratio"] = rows[1]["seconds"] / rows[0]["seconds"]
    if not args.no_chat:
        result["chat"] = chat_run(
            max(1, args.repeats // 2), args.threads, args.model, args.light_model
        )
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    for r in rows:
        print(
            f"{r['decoder']:6s} {1000 * r['seconds']:8.1f} ms/mask  peak +{r['peak_rise_mib']:.0f} MiB"
            f"  {r['parameters']:,} params  out {r['shape']}"
        )
        if "mask_agreement_vs_cpu" in r:
            print(
                f"       on {r['device_name']}: device peak +{r['device_peak_rise_mib']:.0f} MiB, "
                f"masks agree with the CPU's on {100 * r['mask_agreement_vs_cpu']:.3f}% of pixels"
            )
    print(f"hires / light time: {result['time_ratio']:.2f}x")
    if "chat" in result:
        c = result["chat"]
        print(
            f"chat one-shot: light {c['light_seconds']:.2f} s, hires {c['hires_seconds']:.2f} s "
            f"({c['ratio']:.2f}x); masks {c['mask_grids']}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
