"""Run a model over an instruction JSONL file and write a reproducible evaluation report.

`evaluate` takes a model name/folder, a loaded model (+ processor) or a `ChatSession`; it reads
the records (:mod:`skyeye.evaluation.samples`), asks each question through `ChatSession` (so the numbers
are those of the chat users get), scores with :mod:`skyeye.evaluation` and returns a report
dict: metrics, counts, per-sample predictions, skipped/failed records and the exact settings.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from skyeye.chat.session import ChatSession, GenerationSettings, load_chat
from skyeye.evaluation.config import EvalConfig
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
from skyeye.evaluation.tasks import get_task
from skyeye.io.raster import RasterImage
from skyeye.modeling.model import SkyEyeForConditionalGeneration
from skyeye.processing.processor import SkyEyeProcessor

logger = logging.getLogger(__name__)


def _image_kwargs(image: EvalImage, sar_wavelength: float | None) -> dict[str, Any]:
    """Read arguments for one record image: its band names, wavelengths and the SAR placeholder.

    A ``null`` wavelength (a SAR band) becomes ``sar_wavelength`` when one is known; without
    one, the wavelengths are left to the band names (SAR bands then fail with a clear message).
    """
    kwargs: dict[str, Any] = {}
    if image.band_names:
        kwargs["band_names"] = list(image.band_names)
    waves = image.wavelengths
    if waves is not None:
        if all(w is not None for w in waves):
            kwargs["wavelengths"] = [float(w) for w in waves if w is not None]
        elif sar_wavelength is not None:
            kwargs["wavelengths"] = [sar_wavelength if w is None else float(w) for w in waves]
    if sar_wavelength is not None:
        kwargs["sar_wavelength"] = sar_wavelength
    return kwargs


def _load_image(session: ChatSession, image: EvalImage, sar: float | None) -> RasterImage:
    # read_raster stacks a list of multi-band files (ChatEarthNet's PNG triplets) itself.
    try:
        return session.add_image(image.source, **_image_kwargs(image, sar))
    except (ValueError, OSError) as err:
        raise RecordError("unreadable image", str(err)) from None


def _sar_wavelength(session: ChatSession, config: EvalConfig) -> float | None:
    if config.sar_wavelength is not None:
        return config.sar_wavelength
    return session.processor.image_processor.sar_wavelength


def predict(
    session: ChatSession, sample: EvalSample, config: EvalConfig, index: int = 0
) -> Prediction:
    """Ask one sample: reset, attach images, replay the history, ask the question.

    A refseg sample whose image is larger than the scene window is asked of the whole scene
    instead (`skyeye.evaluation.scene_eval`). Raises `RecordError` ("unreadable image", "generation error") instead of stopping the run.
    """
    session.reset()
    sar = _sar_wavelength(session, config)
    shapes: list[tuple[int, int]] = []
    rasters: list[RasterImage] = []
    for image in sample.images:
        raster = _load_image(session, image, sar)
        rasters.append(raster)
        shapes.append((int(raster.data.shape[1]), int(raster.data.shape[2])))
    # Teacher forcing: earlier turns are the record's own, as text (placeholders removed).
    session.messages.extend(dict(turn) for turn in sample.history)
    prompt = build_prompt(sample.question, config.template, sample.candidates)
    if session.settings.do_sample:
        torch.manual_seed(config.seed + index)
    if takes_scene_path(sample, config, rasters):
        try:
            return predict_scene(session, sample, rasters[0], prompt, config)
        except (ValueError, OSError, RuntimeError) as err:
            raise RecordError("scene error", str(err)) from None
    started = time.perf_counter()
    try:
        reply = session.ask(prompt)
    except (ValueError, RuntimeError) as err:
        raise RecordError("generation error", str(err)) from None
    return Prediction(
        sample,
        prompt,
        reply.text,
        list(reply.boxes),
        list(reply.masks),
        shapes,
        time.perf_counter() - started,
    )


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
    preds: list[Prediction] = []
    started = time.perf_counter()
    for index, sample in enumerate(tqdm(samples, desc=f"evaluate {config.task}", unit="rec")):
        try:
            preds.append(predict(session, sample, config, index))
        except RecordError as err:
            logger.warning("failed %s: %s", sample.id, err)
            skipped.append(
                {"id": sample.id, "line": sample.line, "reason": err.reason, "detail": err.detail}
            )
    metrics, per, unparseable = get_task(config.task).score(preds) if preds else (None, [], [])
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
            }
            for p, extra in zip(preds, per, strict=True)
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
