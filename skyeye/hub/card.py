"""Model cards and hub uploads for SkyEye model folders.

    python -m skyeye.hub card --model FOLDER [--eval REPORT.json ...] [--keep-evaluations]
        [--recipe R.yaml] [--info CARD.yaml]
    python -m skyeye.hub push --model FOLDER --repo org/name [--no-dry-run]

`card` writes `FOLDER/README.md` with `huggingface_hub.ModelCard`: YAML metadata (license,
base_model, datasets, tags, pipeline_tag, library_name and, from evaluation reports, a
model-index), then the architecture read from `config.json`, a usage snippet, the sensors and
wavelengths, the training data and recipe, the evaluation numbers, intended use and limitations.
`--info` is a YAML file with any of `title`, `summary`, `license`, `base_model`, `datasets`,
`tags`, `language`, `training_data`, `training_sets` (``[{name, licence, permissive}]``: the
card's table of training sets and licences; without it, those the folder's existing card
records are kept), `intended_use`, `limitations`, `model_id`,
`example_image`.

`push` is a dry run by default: it lists what would be uploaded. With `--no-dry-run` it creates
the repo (if needed) and uploads the folder with `HfApi.upload_folder`.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from skyeye.atomic import write_text
from skyeye.errors import DiskFullError, HubError
from skyeye.hub.files import read_config, read_json
from skyeye.hub.licences import card_license, licence_section, previous_card_info, training_sets
from skyeye.hub.push import PushPlan, plan_push, push  # noqa: F401  (public API)
from skyeye.io.sensors import get_sensor, list_sensors

logger = logging.getLogger(__name__)

TEMPLATE = Path(__file__).resolve().parent / "hub_card_template.md"
PIPELINE_TAG = "image-text-to-text"
LIBRARY_NAME = "skyeye"
DEFAULT_TAGS = ["remote-sensing", "earth-observation", "multispectral", "sar", "dofa", "skyeye"]
#: Hub ids of the LLMs SkyEye embeds by name (`skyeye.modeling.llm`), for `base_model`.
BASE_MODELS = {"smollm2-135m-instruct": "HuggingFaceTB/SmolLM2-135M-Instruct"}
#: Hub task types of SkyEye's evaluation tasks (model-index `task.type`).
TASK_TYPES = {
    "caption": "image-to-text",
    "vqa": "visual-question-answering",
    "mcq": "visual-question-answering",
    "grounding": "object-detection",
    "refseg": "image-segmentation",
}
#: Files never uploaded.
INFO_KEYS = {
    "title", "summary", "license", "base_model", "datasets", "tags", "language",
    "training_data", "training_sets", "intended_use", "limitations", "model_id", "example_image",
}  # fmt: skip

DEFAULT_INTENDED_USE = (
    "Research and prototyping of chat assistants for Earth-observation imagery: describing "
    "scenes, answering questions about optical, multispectral and SAR images, and pointing at "
    "objects with boxes and masks. Check every answer against the image before relying on it."
)
DEFAULT_LIMITATIONS = (
    "Answers can be wrong while sounding sure. Boxes and masks are approximate and drawn on the "
    "grid the image was read at. The model has seen only the sensors, regions and seasons of its "
    "training data; it is not a substitute for validated products (flood maps, crop statistics) "
    "and must not be used for decisions about people or emergencies without expert review."
)


@dataclass
class Evaluation:
    """One evaluation report's headline numbers."""

    task: str
    dataset: str
    metrics: list[tuple[str, float]]
    n: int | None = None
    settings: str = ""


@dataclass
class CardInputs:
    """Everything a card is made from besides the model folder."""

    evaluations: list[Evaluation] = field(default_factory=list)
    recipe_path: Path | None = None
    info: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------ reading
def _scalar_metrics(block: dict[str, Any]) -> list[tuple[str, float]]:
    skip = {"n", "n_parseable", "index", "seed"}
    return [
        (k, float(v))
        for k, v in block.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in skip
    ]


def read_evaluation(path: Path) -> list[Evaluation]:
    """Headline numbers of a report from `python -m skyeye.evaluate` (or any JSON with metrics).

    Accepted shapes: one task (`{"task", "data"/"dataset", "metrics": {...}}` or metrics at the
    top level) or several (`{"tasks": {name: report}}`). Scalar numbers are kept; per-sample lists
    are not.
    """
    report = read_json(path)
    if not isinstance(report, dict):
        raise HubError(
            f"{path}: an evaluation report is a JSON object, got {type(report).__name__}"
        )
    if isinstance(report.get("tasks"), dict):
        parts = [{"task": name, **sub} for name, sub in report["tasks"].items()]
    else:
        parts = [report]
    out = []
    for part in parts:
        block = part["metrics"] if isinstance(part.get("metrics"), dict) else part
        metrics = _scalar_metrics(block)
        if not metrics:
            raise HubError(f"{path}: no numeric metrics found (task {part.get('task')!r})")
        settings = part.get("settings")
        out.append(
            Evaluation(
                task=str(part.get("task") or path.stem),
                dataset=str(part.get("dataset") or part.get("data") or "unspecified"),
                metrics=metrics,
                n=block.get("n") if isinstance(block.get("n"), int) else part.get("n"),
                settings=json.dumps(settings, sort_keys=True) if settings else "",
            )
        )
    return out


def card_evaluations(folder: Path) -> list[Evaluation]:
    """The evaluations of the card already in ``folder`` (its model-index, one per task and
    dataset, metrics in their order; ``n`` read back from the card's own section heading
    "**task** on `dataset` (n samples)"); [] without a card. Lets a card be rewritten with new
    reports for some tasks while the numbers of the others stay (``--keep-evaluations``)."""
    import re

    path = folder / "README.md"
    if not path.is_file():
        return []
    try:
        card = ModelCard.load(path)
    except (ValueError, OSError) as err:
        raise HubError(f"{path}: cannot read the existing card ({err}); move it aside") from err
    grouped: dict[tuple[str, str], list[tuple[str, float]]] = {}
    for r in card.data.eval_results or []:
        key = (str(r.task_name), str(r.dataset_name))
        grouped.setdefault(key, []).append((str(r.metric_type), float(r.metric_value)))
    out = []
    for (task, dataset), metrics in grouped.items():
        heading = re.search(
            rf"\*\*{re.escape(task)}\*\* on `{re.escape(dataset)}` \((\d+) samples\)", card.text
        )
        n = int(heading.group(1)) if heading else None
        out.append(Evaluation(task=task, dataset=dataset, metrics=metrics, n=n))
    return out


def read_info(path: Path) -> dict[str, Any]:
    """The card's free-text fields and metadata overrides from a YAML file."""
    try:
        info = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise HubError(f"{path}: no such file") from None
    except yaml.YAMLError as err:
        raise HubError(f"{path}: not valid YAML ({err})") from None
    unknown = sorted(set(info) - INFO_KEYS)
    if unknown:
        raise HubError(f"{path}: unknown key(s) {unknown}; known: {sorted(INFO_KEYS)}")
    return info


def _recipe(path: Path | None) -> tuple[str, list[tuple[str, str]]]:
    if path is None:
        return "", []
    try:
        text = path.read_text()
        recipe = yaml.safe_load(text)
    except FileNotFoundError:
        raise HubError(f"{path}: no such file") from None
    except yaml.YAMLError as err:
        raise HubError(f"{path}: not valid YAML ({err})") from None
    if not isinstance(recipe, dict):
        raise HubError(f"{path}: a recipe is a YAML mapping")
    # The top level gives the headline settings; nested blocks (stages, data) stay in the YAML.
    summary = [
        (k, json.dumps(v) if isinstance(v, list) else str(v))
        for k, v in recipe.items()
        if not isinstance(v, dict)
    ]
    summary += [
        (k, f"{len(v)} settings (see below)") for k, v in recipe.items() if isinstance(v, dict)
    ]
    return text.strip(), summary


# ------------------------------------------------------------------ writing
def _architecture(config: dict[str, Any], processor: dict[str, Any]) -> list[tuple[str, str]]:
    vc = config.get("vision_config", {})
    tc = config.get("text_config", {})
    llm = config.get("llm_source") or tc.get("_name_or_path", "?")
    where = (
        "weights in this folder" if config.get("llm_embedded") else "referenced, not stored here"
    )
    rows = [
        (
            "vision tower",
            f"{vc.get('family', '?')}: {vc.get('image_size', '?')} px, patch {vc.get('patch_size', '?')}, "
            f"width {vc.get('hidden_size', '?')}, {vc.get('num_hidden_layers', '?')} layers, "
            "wavelength-conditioned patch embedding",
        ),
        (
            "projector",
            f"{config.get('projector_type', '?')}, token pooling {config.get('token_pooling', 1)}"
            + (
                f" ({processor['num_image_tokens']} image tokens per image)"
                if "num_image_tokens" in processor
                else ""
            ),
        ),
        (
            "language model",
            f"{llm} ({tc.get('model_type', '?')}, {tc.get('num_hidden_layers', '?')} layers, "
            f"width {tc.get('hidden_size', '?')}; {where})",
        ),
    ]
    if config.get("use_mask_head"):
        rows.append(
            (
                "mask head",
                f"{config.get('mask_decoder', 'light')} decoder, width "
                f"{config.get('mask_head_hidden_size', '?')}: one mask per `{config.get('seg_token', '[SEG]')}`",
            )
        )
    if config.get("mask_change"):
        rows.append(("change decoder", "Siamese over two dates: a change `[SEG]` -> change mask"))
    if config.get("scene_head"):
        rows.append(
            (
                "scene head",
                f"width {config.get('scene_head_dim', '?')}: scene names scored against the whole "
                "image (scene multiple choice)",
            )
        )
    return rows


def _sensor_rows() -> list[tuple[str, str, str]]:
    rows = []
    for name in list_sensors():
        sensor = get_sensor(name)
        bands = ", ".join(
            f"{b.name} {b.wavelength:g}" if b.wavelength is not None else f"{b.name} (SAR)"
            for b in sensor.bands
        )
        rows.append((name, bands, sensor.default_scaling))
    return rows


def _default_model_id(folder: Path) -> str:
    from skyeye.bundled import get_bundled_model, list_bundled_models

    for name in list_bundled_models():
        if get_bundled_model(name).resolve() == folder.resolve():
            return name
    return str(folder)


def usage_snippet(model_id: str, example_image: str) -> str:
    """Python that loads the model, attaches an image and prints the answer with its boxes/masks."""
    return (
        "from skyeye import load_chat\n\n"
        f'chat = load_chat("{model_id}")\n'
        f'chat.add_image("{example_image}")  # GeoTIFF/JP2/PNG; band names -> wavelengths\n'
        'reply = chat.ask("Is there water in this image?")\n'
        "print(reply.text)\n"
        'print("boxes:", reply.boxes, "mask pixels:", [int(m.sum()) for m in reply.masks])'
    )


def build_card(folder: str | Path, inputs: CardInputs | None = None) -> ModelCard:
    """The model card of `folder` (not yet written)."""
    folder = Path(folder)
    inputs = inputs or CardInputs()
    info = inputs.info
    config = read_config(folder)
    processor = {}
    for name in ("processor_config.json", "preprocessor_config.json"):
        if (folder / name).is_file():
            processor.update(read_json(folder / name))
    model_id = str(info.get("model_id") or _default_model_id(folder))
    title = str(info.get("title") or Path(model_id).name)
    llm = str(config.get("llm_source") or "")
    base_model = (
        info.get("base_model") or BASE_MODELS.get(llm) or (llm if llm.count("/") == 1 else None)
    )
    eval_results = [
        EvalResult(
            task_type=TASK_TYPES.get(ev.task, PIPELINE_TAG),
            task_name=ev.task,
            dataset_type=ev.dataset,
            dataset_name=ev.dataset,
            # huggingface_hub groups results by task type and dataset: without the task as the
            # dataset's configuration, tasks asked on one held-out set merged into one entry.
            dataset_config=ev.task,
            metric_type=name,
            metric_name=name,
            metric_value=value,
        )
        for ev in inputs.evaluations
        for name, value in ev.metrics
    ]
    # A card rewritten without the training sets (`python -m skyeye.hub card` on an installed
    # model) keeps those of the card it replaces: dropping them would also drop the licence they
    # impose (research / non-commercial sets make the weights so).
    sets = training_sets(info if "training_sets" in info else previous_card_info(folder))
    licence_id, licence_name = card_license(info.get("license"), sets)
    data = ModelCardData(
        license=licence_id,
        license_name=licence_name,
        base_model=base_model,
        datasets=info.get("datasets"),
        language=info.get("language", ["en"]),
        library_name=LIBRARY_NAME,
        pipeline_tag=PIPELINE_TAG,
        tags=list(dict.fromkeys([*DEFAULT_TAGS, *info.get("tags", [])])),
        model_name=title if eval_results else None,
        eval_results=eval_results or None,
        training_sets=[asdict(item) for item in sets] or None,
    )
    recipe_text, recipe_summary = _recipe(inputs.recipe_path)
    summary = info.get("summary") or (
        f"A SkyEye remote-sensing chat model: a DOFA-style vision tower that reads any band "
        f"combination by wavelength, a projector, the `{llm or 'LLM'}` language model"
        + (" and a `[SEG]` mask head" if config.get("use_mask_head") else "")
        + ". It describes optical, multispectral and SAR images, answers questions about them and "
        "points at things with boxes `{<x1><y1><x2><y2>}` (0-100 grid) and masks."
    )
    card = ModelCard.from_template(
        data,
        template_path=str(TEMPLATE),
        title=title,
        summary=summary.strip(),
        architecture=_architecture(config, processor),
        usage=usage_snippet(model_id, str(info.get("example_image", "scene.tif"))),
        model_id=model_id,
        sensors=_sensor_rows(),
        sar_wavelength=processor.get("sar_wavelength"),
        image_size=processor.get(
            "image_size", config.get("vision_config", {}).get("image_size", "?")
        ),
        value_scaling=processor.get("value_scaling", "auto"),
        training_data=str(
            info.get("training_data") or "Not stated when this card was written."
        ).strip(),
        licences=licence_section(sets),
        recipe_name=inputs.recipe_path.name if inputs.recipe_path else "",
        recipe_text=recipe_text,
        recipe_summary=recipe_summary,
        evaluations=inputs.evaluations,
        intended_use=str(info.get("intended_use") or DEFAULT_INTENDED_USE).strip(),
        limitations=str(info.get("limitations") or DEFAULT_LIMITATIONS).strip(),
    )
    return card


def write_card(folder: str | Path, inputs: CardInputs | None = None) -> Path:
    """Write `folder/README.md` under a temporary name, renamed when whole; returns its path."""
    card = build_card(folder, inputs)
    path = Path(folder) / "README.md"
    write_text(path, str(card))
    logger.info("wrote model card %s", path)
    return path


# ---------------------------------------------------------------------- CLI
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m skyeye.hub", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    sub = parser.add_subparsers(dest="command", required=True)
    card = sub.add_parser("card", help="write FOLDER/README.md")
    card.add_argument("--model", required=True, type=Path, help="model folder")
    card.add_argument(
        "--eval", action="append", default=[], type=Path, help="evaluation report JSON"
    )
    card.add_argument("--recipe", type=Path, default=None, help="training recipe YAML")
    card.add_argument(
        "--info", type=Path, default=None, help="YAML with the card's texts and metadata"
    )
    card.add_argument(
        "--keep-evaluations",
        action="store_true",
        help="keep the numbers of the folder's existing card for every task the --eval reports "
        "do not report (a model changed in one part, re-measured where that part answers)",
    )
    card.add_argument("--print", action="store_true", help="also print the card")
    up = sub.add_parser("push", help="upload a model folder to the hub (dry run by default)")
    up.add_argument("--model", required=True, type=Path, help="model folder")
    up.add_argument("--repo", required=True, help="hub repo id, org/name")
    up.add_argument("--no-dry-run", dest="dry_run", action="store_false", help="really upload")
    up.add_argument("--private", action="store_true")
    up.add_argument("--revision", default=None)
    up.add_argument("--message", default="Upload SkyEye model")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        if args.command == "card":
            evaluations = [ev for path in args.eval for ev in read_evaluation(path)]
            if args.keep_evaluations:
                new = {ev.task for ev in evaluations}
                kept = [ev for ev in card_evaluations(args.model) if ev.task not in new]
                evaluations = evaluations + kept  # the re-measured first
            inputs = CardInputs(
                evaluations=evaluations,
                recipe_path=args.recipe,
                info=read_info(args.info) if args.info else {},
            )
            path = write_card(args.model, inputs)
            print(path.read_text() if args.print else f"wrote {path}")
        else:
            plan = push(
                args.model,
                args.repo,
                dry_run=args.dry_run,
                private=args.private,
                revision=args.revision,
                commit_message=args.message,
            )
            print(
                ("dry run (pass --no-dry-run to upload): " if args.dry_run else "")
                + plan.describe()
            )
            if plan.url:
                print(f"uploaded: {plan.url}")
    except (HubError, DiskFullError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
