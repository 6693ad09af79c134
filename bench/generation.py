"""Generation benchmark: SkyEye vs plain transformers vs transformers' LLaVA, in one run.

    .venv/bin/python bench/generation.py [--model skyeye-tiny] [--new-tokens 64] [--repeats 3]
                                         [--dtype bfloat16] [--threads 2] [--json OUT]

Three systems decode the same number of tokens greedily from prompts of the same length:

1. SkyEye (`ChatSession`-equivalent path: processor + `model.generate`) answering about
   `examples/sentinel2_berlin_l1c.tif` (13 bands);
2. plain `LlamaForCausalLM.generate` with the same LLM weights and a text prompt of the same
   token count (the floor: no vision work at all);
3. transformers' `LlavaForConditionalGeneration` assembled from the same LLM and a SigLIP vision
   tower of the same width/depth whose image yields the same number of LLM tokens.

Reported per system: time to first token (prompt + vision), decode tokens/s (after the first
token), and the ratios against (2) and (3). Decoding speed is compared with the memory-bandwidth
bound: every decoded token reads all LLM weights once, so tokens/s <= bandwidth / weight bytes;
bandwidth is measured here with a large tensor copy.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from transformers import (
    LlavaConfig,
    LlavaForConditionalGeneration,
    SiglipVisionConfig,
    TextIteratorStreamer,
)

from skyeye import SkyEyeForConditionalGeneration, SkyEyeProcessor, read_raster
from skyeye.chat.session import DEFAULT_SYSTEM_PROMPT
from skyeye.constants import torch_dtype

REPO = Path(__file__).resolve().parents[1]


def timed_generate(
    run: Callable[[TextIteratorStreamer], torch.Tensor], tokenizer
) -> tuple[float, float, int]:
    """Run one generation with a streamer; return (ttft s, decode tok/s, new tokens)."""
    streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
    result: dict = {}
    start = time.perf_counter()
    worker = threading.Thread(target=lambda: result.update(ids=run(streamer)))
    worker.start()
    first = None
    for _ in streamer:
        if first is None:
            first = time.perf_counter()
    worker.join()
    end = time.perf_counter()
    new = int(result["ids"].shape[-1])
    first = first or end
    return first - start, (new - 1) / max(end - first, 1e-9), new


def measure_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """Memory bandwidth in GB/s from copying a large tensor (read + write counted)."""
    src = torch.empty(megabytes * 2**20, dtype=torch.uint8)
    src.fill_(1)
    dst = torch.empty_like(src)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.numel() / best / 1e9


def build_llava(
    llm: torch.nn.Module, vision_width: int, vision_layers: int, heads: int, tokens: int, dtype
):
    """A LLaVA with a SigLIP tower whose image gives `tokens` LLM tokens, around `llm`."""
    side = int(tokens**0.5)
    patch = 16
    vision = SiglipVisionConfig(
        hidden_size=vision_width,
        intermediate_size=4 * vision_width,
        num_hidden_layers=vision_layers,
        num_attention_heads=heads,
        image_size=side * patch,
        patch_size=patch,
        num_channels=13,
    )
    config = LlavaConfig(
        vision_config=vision,
        text_config=llm.config,
        image_token_index=llm.config.vocab_size,
        image_seq_length=tokens,
        vision_feature_select_strategy="full",
        vision_feature_layer=-1,
    )
    llava = LlavaForConditionalGeneration(config)
    llava.model.language_model.load_state_dict(llm.model.state_dict())
    llava.lm_head.load_state_dict(llm.lm_head.state_dict())
    llava.resize_token_embeddings(llm.config.vocab_size + 1)
    return llava.to(dtype).eval(), side * patch


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--model", default="skyeye-tiny")
    parser.add_argument("--image", default=str(REPO / "examples" / "sentinel2_berlin_l1c.tif"))
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--dtype", default="bfloat16", choices=["float32", "bfloat16"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    dtype = torch_dtype(args.dtype)

    model = SkyEyeForConditionalGeneration.from_pretrained(
        args.model, dtype=dtype, merge_adapter=True
    )
    processor = SkyEyeProcessor.from_pretrained(args.model)
    tokenizer = processor.tokenizer
    image = read_raster(args.image, max_size=512)
    messages = [
        {"role": "system", "content": DEFAULT_SYSTEM_PROMPT},
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "\nDescribe this image."}]},
    ]
    inputs = processor(messages, [image])
    prompt_len = int(inputs["input_ids"].shape[1])
    gen = {"max_new_tokens": args.new_tokens, "min_new_tokens": args.new_tokens, "do_sample": False}
    llm = model.language_model
    if hasattr(llm, "peft_config"):
        # PEFT injects LoRA layers into the base model in place: the baselines get a merged copy
        # (a plain transformers LLM of the same shape), SkyEye keeps its unmerged adapter.
        import copy

        llm = copy.deepcopy(llm).merge_and_unload()

    text_ids = torch.randint(100, 40000, (1, prompt_len))
    llava, llava_size = build_llava(
        llm,
        model.config.vision_config.hidden_size,
        model.config.vision_config.num_hidden_layers,
        model.config.vision_config.num_attention_heads,
        model.config.num_image_tokens,
        dtype,
    )
    image_id = llava.config.image_token_index
    llava_ids = inputs["input_ids"].clone()
    llava_ids[llava_ids == processor.image_token_id] = image_id
    llava_pixels = torch.randn(1, 13, llava_size, llava_size, dtype=dtype)

    systems = {
        "skyeye": lambda s: model.generate(**inputs, streamer=s, **gen),
        "transformers_llm": lambda s: llm.generate(
            input_ids=text_ids, attention_mask=torch.ones_like(text_ids), streamer=s, **gen
        )[:, prompt_len:],
        "transformers_llava": lambda s: llava.generate(
            input_ids=llava_ids,
            attention_mask=torch.ones_like(llava_ids),
            pixel_values=llava_pixels,
            streamer=s,
            **gen,
        )[:, prompt_len:],
    }
    results: dict[str, dict] = {}
    with torch.inference_mode():
        for run in systems.values():  # warm-up: first calls allocate and pick kernels
            timed_generate(run, tokenizer)
        samples: dict[str, list[tuple[float, float, int]]] = {name: [] for name in systems}
        for _ in range(args.repeats):  # interleaved, so load changes hit all systems alike
            for name, run in systems.items():
                samples[name].append(timed_generate(run, tokenizer))
    for name, rows in samples.items():
        results[name] = {
            "ttft_s": statistics.median(r[0] for r in rows),
            "decode_tok_s": statistics.median(r[1] for r in rows),
            "new_tokens": rows[0][2],
        }
    bandwidth = measure_bandwidth()
    weight_bytes = sum(p.numel() * p.element_size() for p in llm.parameters())
    bound = bandwidth * 1e9 / weight_bytes
    report = {
        "machine": f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} threads",
        "torch": torch.__version__,
        "dtype": args.dtype,
        "prompt_tokens": prompt_len,
        "image_tokens": model.config.num_image_tokens,
        "results": results,
        "ratios": {
            "skyeye_vs_llm_decode": results["skyeye"]["decode_tok_s"]
            / results["transformers_llm"]["decode_tok_s"],
            "skyeye_vs_llava_decode": results["skyeye"]["decode_tok_s"]
            / results["transformers_llava"]["decode_tok_s"],
            "skyeye_vs_llm_ttft": results["skyeye"]["ttft_s"]
            / results["transformers_llm"]["ttft_s"],
            "skyeye_vs_llava_ttft": results["skyeye"]["ttft_s"]
            / results["transformers_llava"]["ttft_s"],
        },
        "bandwidth_gb_s": bandwidth,
        "llm_weight_mb": weight_bytes / 1e6,
        "bandwidth_bound_tok_s": bound,
        "skyeye_fraction_of_bound": results["skyeye"]["decode_tok_s"] / bound,
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
