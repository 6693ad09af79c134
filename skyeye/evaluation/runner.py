"""Run a model over an instruction JSONL file and write a reproducible evaluation report.

`evaluate` takes a model name/folder, a loaded model (+ processor) or a `ChatSession`; it reads
the records (:mod:`skyeye.evaluation.samples`), reads their images as training does
(`skyeye.data.record_image`), asks each question through `ChatSession` (so the numbers are those
of the chat users get) in the driver loop the held-out driver uses
(`skyeye.evaluation.driver.ask_question`, with the task's baselines beside the model), scores
with the task (`Task.score`, the model's answers and each baseline's) and returns a report dict:
metrics, baselines, counts, per-sample predictions, skipped/failed records and the settings.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from skyeye.chat.session import ChatSession, GenerationSettings, load_chat
from skyeye.data.record_image import read_record_image
from skyeye.evaluation.config import EvalConfig
from skyeye.evaluation.driver import Asker, ask_question
from skyeye.evaluation.priors import record_priors
from skyeye.evaluation.report import REPORT_VERSION, describe_settings, weights_sha256
from skyeye.evaluation.samples import (
    EvalImage,
    EvalSample,
    RecordError,
    build_prompt,
    parse_sample,
    read_jsonl,
    record_id,
)
from skyeye.evaluation.scene_eval import predict_scene, takes_scene_path
from skyeye.evaluation.scoring import Prediction
from skyeye.evaluation.tasks import Question, Task, TileContext, get_task
from skyeye.evaluation.tasks.base import Row
from skyeye.io.raster import RasterImage
from skyeye.io.sensors import resolve_wavelengths
from skyeye.modeling.model import SkyEyeForConditionalGeneration
from skyeye.processing.processor import SkyEyeProcessor

logger = logging.getLogger(__name__)


@dataclass
class RecordImages:
    """What the record runner's `RecordAsker` asks about: a sample, its images as read and its
    index in the run (the sampling seed)."""

    sample: EvalSample
    rasters: list[RasterImage]
    index: int = 0


def _sar_wavelength(session: ChatSession, config: EvalConfig) -> float | None:
    if config.sar_wavelength is not None:
        return config.sar_wavelength
    return session.processor.image_processor.sar_wavelength


def _entry(image: EvalImage) -> dict[str, Any]:
    """The record's image entry, with the paths `parse_sample` checked and resolved."""
    return {
        "path": image.source,
        "band_names": image.band_names,
        "wavelengths": image.wavelengths,
        "modality": image.modality,
    }


def read_image(session: ChatSession, image: EvalImage, config: EvalConfig) -> RasterImage:
    """One image of a record at the chat's read size, read as training reads it
    (`skyeye.data.record_image.read_record_image`); raises `RecordError` ("unreadable image").

    SAR bands keep the checkpoint's placeholder wavelength (the image processor's); only a
    checkpoint without one takes ``config.sar_wavelength`` for them.
    """
    sar = _sar_wavelength(session, config)
    try:
        # The paths were checked against the image root (and --allow-absolute-paths) by
        # parse_sample; they are resolved now, relative to the current directory or absolute.
        raster = read_record_image(
            _entry(image),
            Path.cwd(),
            max_size=session.settings.read_size,
            sar_wavelength=sar,
            allow_absolute=True,
        )
        unset = session.processor.image_processor.sar_wavelength is None
        if raster.wavelengths is None and raster.sensor and sar is not None and unset:
            raster.wavelengths = resolve_wavelengths(
                raster.band_names, sensor=raster.sensor, sar_wavelength=sar
            )
    except (ValueError, OSError) as err:
        raise RecordError("unreadable image", str(err)) from None
    return raster


class RecordAsker(Asker):
    """Asks a record's question as the chat would: a fresh conversation with the record's
    images, its earlier turns replayed as text (teacher forcing) and, for a refseg sample larger
    than the scene window, the whole-scene pipeline; the blind model without images or history.
    Failures are `RecordError`s ("generation error", "scene error")."""

    def __init__(self, session: ChatSession, config: EvalConfig) -> None:
        self.session = session
        self.config = config
        self._blind: dict[str, Any] = {}

    def ask(self, image: RecordImages, question: str) -> Prediction:
        session, sample, config = self.session, image.sample, self.config
        session.reset()
        try:
            for raster in image.rasters:
                session.add_image(raster)  # checks that the bands map to wavelengths
        except ValueError as err:
            raise RecordError("unreadable image", str(err)) from None
        session.messages.extend(dict(turn) for turn in sample.history)
        if session.settings.do_sample:
            torch.manual_seed(config.seed + image.index)
        if takes_scene_path(sample, config, image.rasters):
            try:
                return predict_scene(session, sample, image.rasters[0], question, config)
            except (ValueError, OSError, RuntimeError) as err:
                raise RecordError("scene error", str(err)) from None
        started = time.perf_counter()
        try:
            reply = session.ask(question)
        except (ValueError, RuntimeError) as err:
            raise RecordError("generation error", str(err)) from None
        shapes = [(int(r.data.shape[1]), int(r.data.shape[2])) for r in image.rasters]
        return Prediction(
            sample,
            question,
            reply.text,
            list(reply.boxes),
            list(reply.masks),
            shapes,
            time.perf_counter() - started,
        )

    def ask_blind(self, question: str) -> Any:
        if question not in self._blind:
            self.session.reset()
            required, self.session.require_image = self.session.require_image, False
            try:
                self._blind[question] = self.session.ask(question)
            except (ValueError, RuntimeError) as err:
                raise RecordError("generation error", f"blind baseline: {err}") from None
            finally:
                self.session.require_image = required
        return self._blind[question]


def _keep_prediction(reply: Prediction, question: Question, ctx: TileContext) -> Row:
    return {"prediction": reply}


def ask_record(
    asker: RecordAsker,
    task: Task,
    sample: EvalSample,
    priors: dict[str, Any],
    index: int = 0,
) -> Row:
    """The driver's row of one sample (`ask_question`): ``prediction`` (the model's answer)
    and ``baselines`` (each baseline's columns, by name)."""
    config = asker.config
    rasters = [read_image(asker.session, image, config) for image in sample.images]
    question = task.record_question(
        sample, build_prompt(sample.question, config.template, sample.candidates)
    )
    record = {"id": sample.id, "images": [_entry(image) for image in sample.images]}
    ctx = TileContext(asker, RecordImages(sample, rasters, index), record, priors, seed=config.seed)
    return ask_question(
        task,
        question,
        ctx,
        {},
        read=_keep_prediction,
        baselines=config.record_baselines,
        by_name=True,
    )


def predict(
    session: ChatSession, sample: EvalSample, config: EvalConfig, index: int = 0
) -> Prediction:
    """Ask one sample: reset, attach images, replay the history, ask the question (no
    baselines). Raises `RecordError` instead of stopping the run."""
    rasters = [read_image(session, image, config) for image in sample.images]
    prompt = build_prompt(sample.question, config.template, sample.candidates)
    return RecordAsker(session, config).ask(RecordImages(sample, rasters, index), prompt)


def _baseline_prediction(pred: Prediction, columns: Row) -> Prediction:
    """A baseline's answer (its one column) as a prediction the task scores as the model's."""
    (value,) = columns.values()
    if isinstance(value, list):
        return Prediction(pred.sample, pred.prompt, "", boxes=value, image_shapes=pred.image_shapes)
    return Prediction(pred.sample, pred.prompt, "" if value is None else str(value))


def score_baselines(task: Task, rows: list[Row]) -> dict[str, Any]:
    """Each baseline's metrics: its answers scored by `Task.score`, as the model's are."""
    out: dict[str, Any] = {}
    for name in rows[0]["baselines"] if rows else ():
        preds = [_baseline_prediction(r["prediction"], r["baselines"][name]) for r in rows]
        out[name] = task.score(preds)[0]
    return out


def _baseline_answers(row: Row) -> dict[str, Any]:
    """Each baseline's answer to the row's question, as JSON (boxes as [x1, y1, x2, y2])."""
    out: dict[str, Any] = {}
    for name, columns in row["baselines"].items():
        (value,) = columns.values()
        out[name] = [[b.x1, b.y1, b.x2, b.y2] for b in value] if isinstance(value, list) else value
    return out


def _select(data: Path, config: EvalConfig) -> tuple[list[EvalSample], list[dict], dict[str, int]]:
    """Parse the records of the task: (samples, skipped entries, counts).

    ``--limit`` counts records of the task, usable or not; lines of other tasks are passed over.
    """
    root = Path(config.image_root) if config.image_root is not None else Path.cwd()
    samples: list[EvalSample] = []
    skipped: list[dict[str, Any]] = []
    counts = {"lines_read": 0, "other_task": 0, "selected": 0}
    accepted = config.accepted_tasks
    for line, record in read_jsonl(data):
        if isinstance(record, RecordError):
            counts["lines_read"] += 1
            skipped.append(
                {
                    "id": f"line:{line}",
                    "line": line,
                    "reason": record.reason,
                    "detail": record.detail,
                }
            )
            continue
        if accepted and record.get("task") not in accepted:
            counts["lines_read"] += 1
            counts["other_task"] += 1
            continue
        if config.limit is not None and counts["selected"] >= config.limit:
            break
        counts["lines_read"] += 1
        counts["selected"] += 1
        try:
            samples.append(
                parse_sample(record, line, root, config.task, config.allow_absolute_paths)
            )
        except RecordError as err:
            rid = record_id(record, line)
            skipped.append({"id": rid, "line": line, "reason": err.reason, "detail": err.detail})
    return samples, skipped, counts


def run_evaluation(
    session: ChatSession,
    data: str | Path,
    config: EvalConfig,
    *,
    model_id: str | None = None,
    weights_digest: str | None = None,
) -> dict[str, Any]:
    """Evaluate ``session``'s model on the JSONL file ``data``; returns the report dict."""
    data = Path(data)
    if not data.is_file():
        raise FileNotFoundError(f"{data}: no such data file; pass a unified instruction JSONL file")
    settings = describe_settings(
        session,
        config,
        model_id=model_id or _model_name(session.model),
        data=data,
        sar_wavelength=_sar_wavelength(session, config),
        weights_digest=weights_digest,
    )
    samples, skipped, counts = _select(data, config)
    for entry in skipped:
        logger.warning(
            "skipped %s (line %d): %s %s",
            entry["id"],
            entry["line"],
            entry["reason"],
            entry["detail"],
        )
    task = get_task(config.task)
    asker = RecordAsker(session, config)
    priors = record_priors(samples)
    rows: list[Row] = []
    started = time.perf_counter()
    for index, sample in enumerate(tqdm(samples, desc=f"evaluate {config.task}", unit="rec")):
        try:
            rows.append(ask_record(asker, task, sample, priors, index))
        except RecordError as err:
            logger.warning("failed %s: %s", sample.id, err)
            skipped.append(
                {"id": sample.id, "line": sample.line, "reason": err.reason, "detail": err.detail}
            )
    preds: list[Prediction] = [r["prediction"] for r in rows]
    metrics, per, unparseable = task.score(preds) if preds else (None, [], [])
    if not preds:
        logger.warning("no record of %s was evaluated; the report has no metrics", data)
    reasons: dict[str, int] = {}
    for entry in skipped:
        reasons[entry["reason"]] = reasons.get(entry["reason"], 0) + 1
    return {
        "report_version": REPORT_VERSION,
        "task": config.task,
        "metrics": metrics,
        "counts": {
            **counts,
            "evaluated": len(preds),
            "skipped": len(skipped),
            "skipped_by_reason": reasons,
            "unparseable": len(unparseable),
        },
        "unparseable": unparseable,
        # Each baseline's metrics, scored as the model's answers are (docs/evaluation.md).
        "baselines": score_baselines(task, rows),
        "skipped": skipped,
        "samples": [
            {
                "id": p.sample.id,
                "line": p.sample.line,
                "record_task": p.sample.record_task,
                "images": [img.source for img in p.sample.images],
                "history_turns": len(p.sample.history),
                "prompt": p.prompt,
                "prediction": p.text,
                "reference": p.sample.reference,
                "seconds": round(p.seconds, 3),
                **({"scene": p.scene} if config.scene_settings is not None else {}),
                **extra,
                **({"baselines": _baseline_answers(row)} if row["baselines"] else {}),
            }
            for p, extra, row in zip(preds, per, rows, strict=True)
        ],
        "seconds": round(time.perf_counter() - started, 3),
        "settings": settings,
    }


def _model_name(model: SkyEyeForConditionalGeneration) -> str:
    return str(getattr(model.config, "name_or_path", "") or type(model).__name__)


def evaluate(
    model: str | Path | ChatSession | SkyEyeForConditionalGeneration,
    data: str | Path,
    config: EvalConfig,
    *,
    processor: SkyEyeProcessor | None = None,
    settings: GenerationSettings | None = None,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Evaluate a model given by name/folder/hub id, as a loaded model (+ ``processor``), or as
    a ready `ChatSession` (its own settings are used); returns the report dict."""
    if not Path(data).is_file():  # before a model load that may take minutes
        raise FileNotFoundError(f"{data}: no such data file; pass a unified instruction JSONL file")
    if isinstance(model, ChatSession):
        if settings is not None:
            raise ValueError("a ChatSession brings its own settings; set session.settings instead")
        return run_evaluation(model, data, config)
    if isinstance(model, SkyEyeForConditionalGeneration):
        if processor is None:
            raise ValueError("pass the model's processor= with a loaded model (or pass its name)")
        return run_evaluation(ChatSession(model, processor, settings), data, config)
    from skyeye.bundled import resolve_model_folder

    session = load_chat(model, device=device, dtype=dtype, cache_dir=cache_dir, settings=settings)
    digest = weights_sha256(resolve_model_folder(model))
    return run_evaluation(session, data, config, model_id=str(model), weights_digest=digest)
