"""Evaluate a model on instruction data: ``python -m skyeye.evaluate --model M --data FILE
--task TASK --out REPORT.json`` (TASK: caption, vqa, mcq, grounding, refseg, the held-out
checks presence, amount, count, or change; see ``--help``).

Reads unified instruction JSONL (docs/instruction_format.md), asks each record's question through
`ChatSession`, scores with `skyeye.evaluation` and writes a JSON report with the metrics, every
prediction, the skipped records and the exact settings. See docs/evaluation.md.

With ``--train TRAIN.jsonl`` the data is a ``from_rasters`` held-out split and the task one of
presence, amount, refseg, mcq, count, grounding: the held-out driver (`skyeye.evaluation.heldout`,
the skyeye-tiny card's code) asks it on up to ``--limit`` tiles (default 400) beside its
baselines (majority answers counted in TRAIN, the blind model, median box, index thresholds).
Without ``--train``, ``--baselines`` names the baselines scored beside the model through the same
driver loop (``report["baselines"]``): ``majority`` (the most frequent reference answer of the
evaluated records; mcq, vqa), ``random-letter`` (a seeded uniform option letter; mcq), ``blind``
(the same model without the image; mcq, vqa, caption, grounding). Default: the ones that ask the
model nothing (mcq: majority, random-letter; vqa: majority); ``none`` turns them off.
``--task change`` reads ``python -m instruct_data.change``'s records (`skyeye.evaluation.change_eval`:
change masks, yes/no and hectares beside Otsu, the index rules, the most frequent answer and the
blind model; ``--limit``: records per kind).
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
from skyeye.evaluation.report import REPORT_VERSION, write_report
from skyeye.evaluation.runner import evaluate
from skyeye.evaluation.samples import EVAL_TASKS
from skyeye.evaluation.tasks import list_tasks
from skyeye.scene.pipeline import DEFAULT_BATCH, DEFAULT_OVERLAP, DEFAULT_WINDOW

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m skyeye.evaluate",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--model", default="skyeye-tiny", help="bundled model, model folder or hub id")
    p.add_argument("--data", required=True, help="unified instruction JSONL file")
    p.add_argument(
        "--task",
        required=True,
        choices=[*list_tasks(), "change"],
        help="the question kind; 'change': held-out change records of python -m "
        "instruct_data.change (val.jsonl), masks, yes/no and areas beside their baselines",
    )
    p.add_argument("--out", required=True, help="report JSON to write")
    p.add_argument(
        "--limit",
        type=int,
        default=None,
        help="at most N records of the task (with --train: N tiles, default 400)",
    )
    p.add_argument(
        "--change-kinds",
        default=None,
        help="with --task change: comma-separated record kinds to ask (what, any, much, show; "
        "default: all)",
    )
    p.add_argument(
        "--train",
        default=None,
        help="from_rasters train.jsonl: --data is its held-out split, scored beside the baselines "
        "(majority answers counted here)",
    )
    p.add_argument(
        "--baselines",
        default=None,
        help="comma-separated baselines scored beside the model (majority, blind, random-letter);"
        " 'none' = none; default: the task's that ask the model nothing (not with --train: the "
        "held-out driver runs the card's)",
    )
    p.add_argument(
        "--ndwi-threshold", type=float, default=0.0, help="with --train: the NDWI baseline's t"
    )
    p.add_argument(
        "--vv-db-threshold", type=float, default=-15.0, help="with --train: the VV baseline's dB"
    )
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
    p.add_argument(
        "--mcq-scoring",
        choices=["likelihood", "generate"],
        default="likelihood",
        help="multiple choice: the option of the highest likelihood given the image (default), "
        "or a generated answer's letter",
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


def _baselines(value: str | None) -> tuple[str, ...] | None:
    """``--baselines``: None (the task's defaults), () for 'none', else registry names."""
    if value is None:
        return None
    names = [v.strip().replace("-", "_") for v in value.split(",") if v.strip()]
    return () if names == ["none"] else tuple(names)


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
    if args.task == "change":
        return run_change(args, argv)
    if args.change_kinds is not None:
        print("error: --change-kinds is for --task change; leave it out", file=sys.stderr)
        return 2
    if args.train is not None:
        if args.baselines is not None:
            print("error: --baselines is for records; with --train the card's run", file=sys.stderr)
            return 2
        return run_heldout(args, argv)
    if args.task not in EVAL_TASKS:
        print(
            f"error: --task {args.task} is asked on held-out tiles: pass --train", file=sys.stderr
        )
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
            baselines=_baselines(args.baselines),
        )
        settings = _settings(args)
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
    report["settings"]["command"] = _command(argv)
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
    for name, metrics in report["baselines"].items():
        logger.info("baseline %s: %s", name, _short(metrics))
    return 0 if report["metrics"] is not None else 1


def _settings(args: argparse.Namespace) -> GenerationSettings:
    return GenerationSettings(
        max_new_tokens=args.max_new_tokens,
        do_sample=args.do_sample,
        temperature=args.temperature,
        top_p=args.top_p,
        repetition_penalty=args.repetition_penalty,
        system_prompt=None if args.system_prompt.lower() == "none" else args.system_prompt,
        read_size=args.read_size,
        mcq_scoring=args.mcq_scoring,
    )


def run_heldout(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """``--train``: the held-out driver on one task; the report has its blocks and rows."""
    from pathlib import Path

    from skyeye.evaluation.heldout import HELD_OUT_TASKS, evaluate_heldout, open_asker

    if args.task not in HELD_OUT_TASKS:
        print(f"error: --task {args.task} is not asked on held-out tiles", file=sys.stderr)
        return 2
    data, train = Path(args.data), Path(args.train)
    for f in (data, train):
        if not f.is_file():
            print(
                f"error: {f}: no such file (from_rasters val.jsonl / train.jsonl)", file=sys.stderr
            )
            return 2
    try:
        settings = _settings(args)
        asker = open_asker(
            args.model,
            settings=settings,
            dtype=torch_dtype(args.dtype),
            device=args.device,
            cache_dir=args.cache_dir,
        )
        result = evaluate_heldout(
            asker,
            data,
            train,
            tasks=[args.task],
            max_tiles=args.limit or 400,
            ndwi_threshold=args.ndwi_threshold,
            vv_db_threshold=args.vv_db_threshold,
        )
    except (ValueError, OSError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    command = _command(argv)
    report = {
        "report_version": REPORT_VERSION,
        "task": args.task,
        "metrics": result["tasks"] or None,
        "rows": result["rows"],
        "priors": result["priors"],
        "settings": {
            "model": args.model,
            "data": str(data),
            "train": str(train),
            "max_tiles": args.limit or 400,
            "ndwi_threshold": args.ndwi_threshold,
            "vv_db_threshold": args.vv_db_threshold,
            "decoding": settings.generate_kwargs(),
            "read_size": settings.read_size,
            "system_prompt": settings.system_prompt,
            "dtype": args.dtype,
            "device": args.device,
            "command": command,
        },
    }
    path = write_report(report, args.out)
    logger.info("%s on %d held-out tiles; report %s", args.task, result["rows"]["tiles"], path)
    return 0 if any(v for k, v in result["rows"].items() if k != "tiles") else 1


def run_change(args: argparse.Namespace, argv: Sequence[str] | None) -> int:
    """``--task change``: the chat's change answers on change records beside the baselines."""
    from pathlib import Path

    from skyeye.chat.session import ChatSession, load_chat
    from skyeye.evaluation.change_eval import CHANGE_KINDS, evaluate_change

    data = Path(args.data)
    if not data.is_file():
        print(f"error: {data}: no such file (instruct_data.change val.jsonl)", file=sys.stderr)
        return 2
    root = Path(args.image_root) if args.image_root else data.parent
    kinds = tuple(k.strip() for k in (args.change_kinds or ",".join(CHANGE_KINDS)).split(","))
    unknown = [k for k in kinds if k not in CHANGE_KINDS]
    if unknown:
        print(
            f"error: --change-kinds {args.change_kinds!r}: unknown kind {unknown}; choose from "
            f"{', '.join(CHANGE_KINDS)}",
            file=sys.stderr,
        )
        return 2
    try:
        settings = _settings(args)
        session = load_chat(
            args.model,
            device=args.device,
            dtype=torch_dtype(args.dtype),
            cache_dir=args.cache_dir,
            settings=settings,
        )
        blind = ChatSession(session.model, session.processor, settings, require_image=False)
        result = evaluate_change(session, blind, data, root, limit=args.limit, kinds=kinds)
    except (ValueError, OSError, KeyError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    command = _command(argv)
    report = {
        "report_version": REPORT_VERSION,
        "task": "change",
        **result,
        "settings": {
            "model": args.model,
            "data": str(data),
            "image_root": str(root),
            "limit_per_kind": args.limit,
            "kinds": list(kinds),
            "decoding": settings.generate_kwargs(),
            "read_size": settings.read_size,
            "dtype": args.dtype,
            "device": args.device,
            "command": command,
        },
    }
    path = write_report(report, args.out)
    logger.info("change: %s; report %s", {k: len(v) for k, v in result["rows"].items()}, path)
    return 0 if result["metrics"] else 1


def _command(argv: Sequence[str] | None) -> list[str]:
    """The command line a report records (the arguments given, or the process's own)."""
    return ["python", "-m", "skyeye.evaluate", *(sys.argv[1:] if argv is None else argv)]


def _short(metrics: dict | None) -> str:
    if metrics is None:
        return "none"
    return ", ".join(
        f"{k}={v:.4f}" for k, v in metrics.items() if isinstance(v, float) and not k.endswith("_n")
    )


if __name__ == "__main__":
    sys.exit(main())
