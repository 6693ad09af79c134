"""Evaluate a model on instruction data: ``python -m skyeye.evaluate --model M --data FILE
--task {caption,vqa,mcq,grounding,refseg} --out REPORT.json``.

Reads unified instruction JSONL (docs/instruction_format.md), asks each record's question through
`ChatSession`, scores with `skyeye.evaluation` and writes a JSON report with the metrics, every
prediction, the skipped records and the exact settings. See docs/evaluation.md.
Exit status: 0 report written, 1 report written but no record could be evaluated, 2 bad usage.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from skyeye.chat.session import DEFAULT_SYSTEM_PROMPT, GenerationSettings
from skyeye.constants import DTYPE_NAMES, torch_dtype
from skyeye.evaluation.config import EvalConfig
from skyeye.evaluation.report import write_report
from skyeye.evaluation.runner import evaluate
from skyeye.evaluation.samples import EVAL_TASKS
from skyeye.scene.pipeline import DEFAULT_BATCH, DEFAULT_OVERLAP, DEFAULT_WINDOW

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m skyeye.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="skyeye-tiny", help="preset name, model folder or hub id")
    p.add_argument("--data", required=True, help="unified instruction JSONL file")
    p.add_argument("--task", required=True, choices=EVAL_TASKS)
    p.add_argument("--out", required=True, help="report JSON to write")
    p.add_argument("--limit", type=int, default=None, help="at most N records of the task")
    p.add_argument(
        "--image-root",
        default=None,
        help="folder relative image paths resolve against (default: cwd)",
    )
    p.add_argument(
        "--allow-absolute-paths",
        action="store_true",
        help="accept absolute image paths in --data (default: refused, as are paths leaving "
        "--image-root)",
    )
    p.add_argument(
        "--record-task",
        action="append",
        default=None,
        help="record 'task' label to evaluate (repeatable; 'all' = every record); "
        "default: the task's own labels (docs/evaluation.md)",
    )
    p.add_argument(
        "--prompt-template",
        default=None,
        help="question template with {question} (and {options} for mcq); default: {question}",
    )
    p.add_argument(
        "--system-prompt",
        default=DEFAULT_SYSTEM_PROMPT,
        help="system message; 'none' = the LLM template's default (default: the chat's)",
    )
    p.add_argument("--max-new-tokens", type=int, default=200)
    p.add_argument("--do-sample", action="store_true", help="sample instead of greedy decoding")
    p.add_argument("--temperature", type=float, default=0.7)
    p.add_argument("--top-p", type=float, default=0.9)
    p.add_argument("--repetition-penalty", type=float, default=1.1)
    p.add_argument("--seed", type=int, default=0, help="with --do-sample: record i uses seed + i")
    p.add_argument("--read-size", type=int, default=512, help="longest side images are read at")
    p.add_argument(
        "--sar-wavelength",
        type=float,
        default=None,
        help="placeholder wavelength (µm) for SAR bands; default: the checkpoint's setting",
    )
    p.add_argument(
        "--no-scene",
        action="store_true",
        help="refseg: score images larger than --scene-window on the image as read, too",
    )
    p.add_argument(
        "--scene-window",
        type=int,
        default=DEFAULT_WINDOW,
        help="refseg: images larger than this (px) are answered by the whole-scene pipeline",
    )
    p.add_argument("--scene-overlap", type=int, default=DEFAULT_OVERLAP, help="scene overlap, px")
    p.add_argument("--scene-batch", type=int, default=DEFAULT_BATCH, help="scene windows per call")
    p.add_argument(
        "--scene-gsd", type=float, default=None, help="scene output pixel size (default: native)"
    )
    p.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    p.add_argument(
        "--dtype",
        default="float32",
        choices=list(DTYPE_NAMES),
        help="weights dtype (default float32: the most reproducible on every device)",
    )
    p.add_argument("--cache-dir", default=None, help="where the converted embedded LLM is cached")
    p.add_argument("--quiet", action="store_true", help="only warnings and errors")
    return p


def _record_tasks(values: list[str] | None) -> frozenset[str] | None:
    if values is None:
        return None
    return frozenset() if "all" in values else frozenset(values)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(message)s"
    )
    if args.max_new_tokens < 1 or args.read_size < 1:
        print("error: --max-new-tokens and --read-size must be positive", file=sys.stderr)
        return 2
    try:
        config = EvalConfig(
            task=args.task,
            prompt_template=args.prompt_template,
            limit=args.limit,
            image_root=args.image_root,
            allow_absolute_paths=args.allow_absolute_paths,
            record_tasks=_record_tasks(args.record_task),
            sar_wavelength=args.sar_wavelength,
            seed=args.seed,
            scene=not args.no_scene,
            scene_window=args.scene_window,
            scene_overlap=args.scene_overlap,
            scene_batch=args.scene_batch,
            scene_gsd=args.scene_gsd,
        )
        settings = GenerationSettings(
            max_new_tokens=args.max_new_tokens,
            do_sample=args.do_sample,
            temperature=args.temperature,
            top_p=args.top_p,
            repetition_penalty=args.repetition_penalty,
            system_prompt=None if args.system_prompt.lower() == "none" else args.system_prompt,
            read_size=args.read_size,
        )
        report = evaluate(
            args.model,
            args.data,
            config,
            settings=settings,
            device=args.device,
            dtype=torch_dtype(args.dtype),
            cache_dir=args.cache_dir,
        )
    except (ValueError, OSError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report["settings"]["command"] = [
        "python",
        "-m",
        "skyeye.evaluate",
        *(sys.argv[1:] if argv is None else argv),
    ]
    path = write_report(report, args.out)
    counts = report["counts"]
    logger.info(
        "%s: %d evaluated, %d skipped, %d unparseable; metrics %s; report %s",
        args.task,
        counts["evaluated"],
        counts["skipped"],
        counts["unparseable"],
        _short(report["metrics"]),
        path,
    )
    return 0 if report["metrics"] is not None else 1


def _short(metrics: dict | None) -> str:
    if metrics is None:
        return "none"
    return ", ".join(
        f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float) and not k.endswith("_n")
    )


if __name__ == "__main__":
    sys.exit(main())
