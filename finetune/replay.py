"""Replay of the base LLM's own answers to ordinary instructions, so tuning keeps its behaviour.

Tuned only on templated image questions, skyeye-tiny lost SmolLM2's instruction following: asked
anything it answered in one of the few shapes it was trained on. Here the base LLM answers a list of
ordinary, text-only instructions (``finetune/data/replay/prompts.txt``, written for this project)
greedily, with the chat's system prompt, and those answers become text-only training records
mixed into stage 2 (as in "replay" for continual learning). Lines after ``## held-out`` in the
prompt file are never trained on: validation compares the tuned model's answers with the base
model's there (``held_out_prompts``).

    python -m finetune.replay --llm smollm2-135m-instruct --out runs/skyeye-tiny/data/replay.jsonl
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from instruct_data.schema import SCHEMA_VERSION
from skyeye.atomic import write_text

logger = logging.getLogger(__name__)

PROMPTS = Path(__file__).resolve().parent / "data" / "replay" / "prompts.txt"
HELD_OUT_MARK = "## held-out"


def read_prompts(path: Path = PROMPTS) -> tuple[list[str], list[str]]:
    """(training prompts, held-out prompts) of a prompt file; '#' lines are comments."""
    train: list[str] = []
    held: list[str] = []
    target = train
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line == HELD_OUT_MARK:
            target = held
        elif line and not line.startswith("#"):
            target.append(line)
    if not train:
        raise ValueError(f"{path}: no training prompts")
    return train, held


def held_out_prompts(path: Path = PROMPTS) -> list[str]:
    """The prompts validation asks both the base and the tuned model."""
    return read_prompts(path)[1]


def _whole_sentences(text: str) -> str:
    """Cut an answer that hit the token limit back to its last complete sentence."""
    text = text.strip()
    if re.search(r"[.!?]\s*$", text):
        return text
    ends = [m.end() for m in re.finditer(r"[.!?](?=\s)", text)]
    return text[: ends[-1]].strip() if ends else text


def base_answers(
    llm: str, prompts: Sequence[str], system_prompt: str | None, max_new_tokens: int = 96
) -> list[str]:
    """The base LLM's greedy float32 answers (deterministic on one machine)."""
    import torch
    from tqdm import tqdm

    from skyeye.modeling.llm import load_llm

    model, tokenizer = load_llm(llm, dtype=torch.float32)
    model.eval()
    out = []
    for prompt in tqdm(prompts, desc="base LLM answers", unit="prompt"):
        messages = [{"role": "user", "content": prompt}]
        if system_prompt:
            messages.insert(0, {"role": "system", "content": system_prompt})
        ids = tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        with torch.no_grad():
            gen = model.generate(
                **ids,
                max_new_tokens=max_new_tokens,
                do_sample=False,
                pad_token_id=tokenizer.eos_token_id,
            )
        text = tokenizer.decode(gen[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
        out.append(_whole_sentences(text))
    return out


def replay_records(prompts: Sequence[str], answers: Sequence[str], repeat: int) -> list[dict]:
    """Text-only unified-format records (``repeat`` copies each, distinct ids)."""
    records = []
    for copy in range(repeat):
        for i, (prompt, answer) in enumerate(zip(prompts, answers, strict=True)):
            if not answer:
                continue
            records.append(
                {
                    "schema_version": SCHEMA_VERSION,
                    "id": f"replay:{i}:{copy}",
                    "source": "replay:base-llm",
                    "task": "conversation",
                    "images": [],
                    "turns": [
                        {"role": "user", "text": prompt},
                        {"role": "assistant", "text": answer},
                    ],
                    "meta": {"gen_task": "replay", "label_source": "the base LLM's own answer"},
                }
            )
    return records


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m finetune.replay", description=__doc__.split("\n\n")[0]
    )
    p.add_argument(
        "--llm", default="smollm2-135m-instruct", help="the base LLM (embedded name, folder)"
    )
    p.add_argument("--prompts", type=Path, default=PROMPTS, help="prompt file (one per line)")
    p.add_argument("--out", type=Path, required=True, help="JSONL of text-only records to write")
    p.add_argument("--repeat", type=int, default=1, help="copies of each record (its weight)")
    p.add_argument("--max-new-tokens", type=int, default=96)
    p.add_argument(
        "--system-prompt",
        default="default",
        help="'default' = the chat's system prompt (skyeye.chat.session), 'none' = no system turn",
    )
    args = p.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.prompts.is_file():
        print(f"error: {args.prompts} does not exist: pass --prompts FILE", file=sys.stderr)
        return 2
    if args.repeat < 1:
        print(f"error: --repeat must be at least 1, got {args.repeat}", file=sys.stderr)
        return 2
    from skyeye.chat.session import DEFAULT_SYSTEM_PROMPT

    system = {"default": DEFAULT_SYSTEM_PROMPT, "none": None}.get(
        args.system_prompt, args.system_prompt
    )
    train, _ = read_prompts(args.prompts)
    answers = base_answers(args.llm, train, system, args.max_new_tokens)
    records = replay_records(train, answers, args.repeat)
    write_text(args.out, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
    logger.info(
        "wrote %d replay records (%d prompts x %d) to %s",
        len(records),
        len(train),
        args.repeat,
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
