"""`python -m finetune.train --recipe R.yaml [--key value ...]`: stage 1 alignment or stage 2 LoRA/QLoRA.

Runs unchanged under `accelerate launch --config_file finetune/accelerate_configs/X.yaml -m
finetune.train ...` (one GPU, DDP, DeepSpeed ZeRO-2/3, FSDP) and on the CPU with gloo.
Writes OUTPUT/log.jsonl, OUTPUT/checkpoints/checkpoint-N (resumable with --resume true) and the
final model folder OUTPUT/model (loadable by `SkyEyeForConditionalGeneration.from_pretrained`,
with the LoRA adapter as a standard PEFT adapter in OUTPUT/model/adapter).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import torch

from finetune.args import parse_args
from finetune.model_setup import (
    ConfigError,
    added_token_ids,
    check_recipe,
    configure_trainable,
    load_or_build,
)
from skyeye.atomic import atomic_dir, write_text
from skyeye.constants import torch_dtype
from skyeye.errors import DiskFullError

logger = logging.getLogger(__name__)


def check_output_dir(out: Path) -> None:
    """Raise `ConfigError` unless files can be created in `out` (made if missing).

    Checked before the model loads: a read-only or missing-parent folder otherwise fails at the
    first log line or checkpoint, with a traceback, after minutes of work.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as err:
        raise ConfigError(
            f"cannot write the output folder {out} ({err.strerror or err}): choose a writable "
            "--output_dir"
        ) from None


def main(argv: list[str] | None = None) -> int:
    recipe = parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Per-image reader notes would interleave with the progress bar on every step.
    logging.getLogger("skyeye.io").setLevel(logging.WARNING)
    try:
        check_recipe(recipe)
        check_output_dir(Path(recipe.train.output_dir))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2

    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed

    from finetune.launch import run_on_cpu

    try:
        cpu = run_on_cpu(os.environ, cuda=torch.cuda.is_available())
    except ConfigError as err:
        if os.environ.get("LOCAL_RANK", "0") == "0":  # one line, not one per process
            print(f"error: {err}", file=sys.stderr)
        return 2

    from finetune.data_setup import build_datasets
    from finetune.loop import Loop
    from finetune.run_log import RunLog
    from finetune.schedule import make_scheduler
    from skyeye.data.dataset import SkyEyeCollator

    t = recipe.train
    accelerator = Accelerator(
        cpu=cpu,
        gradient_accumulation_steps=t.grad_accum,
        # Batches without [SEG] leave the mask head unused; DDP must not wait for its gradients.
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    set_seed(t.seed)
    out = Path(t.output_dir)
    try:
        if (
            recipe.model.dtype != "float32"
            and accelerator.mixed_precision == "no"
            and not recipe.model.qlora
        ):
            raise ConfigError(
                f"model.dtype {recipe.model.dtype} needs mixed precision for the float32 projector "
                "and mask head: run with `accelerate launch --mixed_precision bf16` (or an "
                "accelerate config with mixed_precision), or set --dtype float32"
            )
        with accelerator.main_process_first():
            model, processor = load_or_build(recipe)
        mask_size = model.config.vision_config.image_size if model.mask_head is not None else None
        train_ds, eval_ds, report = build_datasets(recipe, processor, mask_size)
        if report.bad:
            lines = "\n".join(f"  {rid}: {reason}" for rid, reason in report.bad[:50])
            more = f"\n  ... and {len(report.bad) - 50} more" if len(report.bad) > 50 else ""
            if recipe.data.on_bad_record == "stop":
                if accelerator.is_main_process:
                    print(
                        f"error: {len(report.bad)} bad record(s); nothing was trained (on_bad_record=stop). "
                        f"Fix them or run with --on_bad_record skip:\n{lines}{more}",
                        file=sys.stderr,
                    )
                return 2
            logger.warning("skipping %d bad record(s):\n%s%s", len(report.bad), lines, more)
        counts = configure_trainable(model, recipe, added_token_ids(model, processor))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    log = None
    if accelerator.is_main_process:
        out.mkdir(parents=True, exist_ok=True)
        write_text(out / "recipe.json", json.dumps(recipe.to_dict(), indent=2) + "\n")
        log = RunLog(out, tensorboard=t.tensorboard)
        log.write(
            "start",
            0,
            trainable=counts,
            train_records=report.train_records,
            eval_records=report.eval_records,
            filtered_by_task=report.filtered_by_task,
            bad_records=len(report.bad),
            bad_by_reason=report.bad_by_reason(),
            processes=accelerator.num_processes,
            resume=t.resume,
        )
        logger.info("trainable parameters: %s", counts)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)
    # Stepped by the loop once per optimizer step on every process (not prepared: accelerate
    # would step it once per process).
    scheduler = make_scheduler(optimizer, t.scheduler, t.warmup_steps, t.max_steps)
    model, optimizer = accelerator.prepare(model, optimizer)
    loop = Loop(
        recipe,
        accelerator,
        model,
        optimizer,
        scheduler,
        train_ds,
        eval_ds,
        SkyEyeCollator(processor.tokenizer.pad_token_id),
        log,
    )
    try:
        if t.resume:
            loop.resume()
        metrics = loop.run()
        latest = loop.ckpt.latest()
        if latest is None or int(latest.name.split("-")[-1]) != loop.step:
            loop.save_checkpoint()
        accelerator.wait_for_everyone()
        if accelerator.is_main_process:
            final = accelerator.unwrap_model(model)
            folder = out / "model"
            dtype = torch_dtype(t.save_dtype) if t.save_dtype else None
            # Written beside and renamed into place: a kill or a full disk keeps the old folder.
            with atomic_dir(folder) as tmp:
                final.save_pretrained(tmp, processor=processor, dtype=dtype)
    except DiskFullError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if accelerator.is_main_process:
        log.write("end", loop.step, model=str(folder), **metrics)
        log.close()
        logger.info(
            "model written to %s (adapter in %s/adapter when LoRA was trained)", folder, folder
        )
    accelerator.end_training()
    return 0


if __name__ == "__main__":
    sys.exit(main())
