"""Training arguments as dataclasses with help text, filled from a recipe (YAML) and `--key value`.

A recipe has one section per dataclass (`model:`, `data:`, `lora:`, `train:`). On the command line
every field is `--name value` (names are unique across sections) or `--section.name value`.
Values on the command line are parsed as YAML scalars/lists (`--lr 1e-4`, `--lora_targets
[q_proj,v_proj]`, `--qlora true`).
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, get_args

import yaml

#: The option fields' values: the type checker reads them, `check_recipe` enforces them at start.
DtypeName = Literal["float32", "bfloat16", "float16"]
OnBadRecord = Literal["skip", "stop"]
ProjectorType = Literal["linear", "mlp2x_gelu"]
NewTokenRows = Literal["trainable_tokens", "modules_to_save", "none"]
SchedulerName = Literal["cosine", "linear", "constant"]
ON_BAD_RECORD: tuple[str, ...] = get_args(OnBadRecord)
NEW_TOKEN_ROWS: tuple[str, ...] = get_args(NewTokenRows)
SCHEDULERS: tuple[str, ...] = get_args(SchedulerName)


def _f(default: Any, help: str, **kwargs: Any) -> Any:  # noqa: A002 - the dataclass help text
    if isinstance(default, (list, dict)):
        return field(
            default_factory=lambda d=default: type(d)(d), metadata={"help": help}, **kwargs
        )
    return field(default=default, metadata={"help": help}, **kwargs)


@dataclass
class ModelArgs:
    """Which model to start from."""

    model: str | None = _f(
        None,
        "SkyEye model folder, bundled model (skyeye-tiny) or hub id to start from; "
        "None builds a new model from `vision` + `llm`",
    )
    vision: str = _f(
        "tiny-test",
        "registered vision config for a new model (skyeye.modeling.vision.get_vision_config)",
    )
    llm: str = _f("smollm2-135m-instruct", "LLM for a new model: embedded name, folder or hub id")
    llm_random_init: bool = _f(
        False,
        "build the LLM from its config with random weights (smoke tests, "
        "timing); the base LLM is then written to OUTPUT/base-llm",
    )
    llm_config_overrides: dict = _f(
        {},
        "LLM config fields to change before a random init "
        "(e.g. {num_hidden_layers: 2, hidden_size: 64})",
    )
    image_size: int | None = _f(
        None, "model input side in pixels for a new model (default: the tower's)"
    )
    use_mask_head: bool = _f(True, "new model: build the [SEG] mask head")
    mask_head_hidden_size: int = _f(256, "new model: width of the mask decoder")
    projector_type: ProjectorType = _f("mlp2x_gelu", "new model: linear or mlp2x_gelu")
    token_pooling: int = _f(1, "new model: average-pool the patch grid by this factor per side")
    sar_wavelength: float | None = _f(
        None,
        "placeholder wavelength (µm) for SAR bands, saved with "
        "the processor (5.405 DOFA v2 / DOFA-CLIP, 3.75 DOFA v1); "
        "None keeps the model's",
    )
    qlora: bool = _f(
        False, "load the LLM in 4-bit (bitsandbytes NF4) and train LoRA on top (QLoRA)"
    )
    dtype: DtypeName = _f("float32", "compute dtype of the LLM: float32, bfloat16 or float16")


@dataclass
class DataArgs:
    """Training and evaluation data (unified instruction JSONL, docs/instruction_format.md)."""

    train_files: list = _f([], "training JSONL files")
    eval_files: list = _f([], "held-out JSONL files; empty uses eval_fraction of train_files")
    eval_fraction: float = _f(
        0.0,
        "fraction of training records held out for evaluation when "
        "eval_files is empty (picked by a hash of the record id)",
    )
    image_root: str | None = _f(
        None, "folder image paths are relative to (default: each JSONL's folder)"
    )
    allow_absolute_paths: bool = _f(
        False,
        "accept absolute image paths in the data files (default: refused, "
        "as are paths that leave image_root)",
    )
    tasks: list = _f([], "keep only records of these tasks (empty: all); stage 1 uses [caption]")
    on_bad_record: OnBadRecord = _f(
        "skip",
        "skip: drop bad records and count them in the log; stop: list them "
        "and exit before training",
    )
    max_length: int | None = _f(
        None, "longest tokenised conversation kept (default: the LLM's context)"
    )
    system_prompt: str | None = _f(
        "default",
        "system message of every conversation: 'default' "
        "uses the chat's (skyeye.chat.session.DEFAULT_SYSTEM_PROMPT), null none",
    )
    num_workers: int = _f(0, "DataLoader worker processes per training process")


@dataclass
class LoraArgs:
    """LoRA adapters on the LLM (stage 2)."""

    lora_r: int = _f(16, "LoRA rank")
    lora_alpha: int = _f(32, "LoRA alpha (scaling = alpha / r)")
    lora_dropout: float = _f(0.05, "dropout on the LoRA input")
    lora_targets: list = _f(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        "LLM module names that get adapters (each must exist in the LLM)",
    )
    new_token_rows: NewTokenRows = _f(
        "trainable_tokens",
        "how the rows of tokens SkyEye added ([SEG], <p>, "
        "</p>) are trained: trainable_tokens (only those rows, peft "
        "trainable_token_indices), modules_to_save (whole embedding and head: "
        "large adapter) or none",
    )


@dataclass
class TrainArgs:
    """Optimisation, checkpoints and logging."""

    stage: int = _f(2, "1: align the projector (LLM frozen); 2: LoRA + projector + mask head")
    train_vision_tower: bool = _f(False, "also train the vision tower")
    train_projector: bool = _f(True, "train the projector")
    train_mask_head: bool = _f(True, "stage 2: train the mask head (when the model has one)")
    output_dir: str = _f("runs/finetune", "where checkpoints, logs and the final model go")
    seed: int = _f(0, "seed of initialisation, data order and dropout")
    max_steps: int = _f(100, "optimizer steps to run")
    batch_size: int = _f(2, "examples per process per micro-batch")
    grad_accum: int = _f(
        1, "micro-batches per optimizer step (global batch = batch_size x processes x grad_accum)"
    )
    lr: float = _f(2e-4, "peak learning rate (LoRA and new weights)")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    warmup_steps: int = _f(0, "linear warm-up steps")
    scheduler: SchedulerName = _f("cosine", "cosine, linear or constant (after warm-up)")
    max_grad_norm: float = _f(1.0, "gradient clipping (0 = off)")
    ce_weight: float = _f(1.0, "token cross-entropy weight")
    bce_weight: float = _f(2.0, "mask BCE weight")
    dice_weight: float = _f(0.5, "mask dice weight")
    gradient_checkpointing: bool = _f(
        False, "recompute LLM activations in the backward pass (less memory)"
    )
    save_every: int = _f(50, "write a resumable checkpoint every N steps (0 = only at the end)")
    keep_checkpoints: int = _f(2, "checkpoints kept on disk (older ones are deleted)")
    resume: bool = _f(False, "continue from the latest checkpoint in output_dir")
    eval_every: int = _f(0, "evaluate on the held-out split every N steps (0 = only at the end)")
    log_every: int = _f(1, "write a log line every N steps")
    tensorboard: bool = _f(
        False, "also log to tensorboard (OUTPUT/tensorboard; needs the tensorboard package)"
    )
    save_dtype: DtypeName | None = _f(
        None, "store the final model.safetensors in this dtype (e.g. bfloat16)"
    )


SECTIONS: dict[str, type] = {
    "model": ModelArgs,
    "data": DataArgs,
    "lora": LoraArgs,
    "train": TrainArgs,
}


@dataclass
class Recipe:
    model: ModelArgs
    data: DataArgs
    lora: LoraArgs
    train: TrainArgs

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {name: dataclasses.asdict(getattr(self, name)) for name in SECTIONS}


def not_positive(args: argparse.Namespace, names: tuple[str, ...]) -> str | None:
    """The one-line error for the first of ``names`` (argparse destinations) below 1
    ("error: --batch-size must be positive"), or None when all are positive."""
    for name in names:
        if getattr(args, name) < 1:
            return f"error: --{name.replace('_', '-')} must be positive"
    return None


def _field_owner() -> dict[str, str]:
    owner: dict[str, str] = {}
    for section, cls in SECTIONS.items():
        for f in dataclasses.fields(cls):
            if f.name in owner:
                raise RuntimeError(f"field {f.name} appears in two sections")
            owner[f.name] = section
    return owner


def build_parser() -> argparse.ArgumentParser:
    """The `finetune.train` parser: --recipe plus one option per dataclass field."""
    parser = argparse.ArgumentParser(
        prog="python -m finetune.train",
        description="Fine-tune SkyEye (stage 1 alignment or stage 2 LoRA/QLoRA). Options override the recipe.",
    )
    parser.add_argument("--recipe", type=Path, help="YAML recipe (sections model/data/lora/train)")
    for section, cls in SECTIONS.items():
        group = parser.add_argument_group(section, cls.__doc__)
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
            group.add_argument(
                f"--{f.name}",
                f"--{section}.{f.name}",
                dest=f.name,
                type=yaml.safe_load,
                default=argparse.SUPPRESS,
                metavar="VALUE",
                help=f"{f.metadata['help']} (default: {default!r})",
            )
    return parser


def _coerce(cls: type, name: str, value: Any) -> Any:
    """YAML reads `1e-4` as a string (YAML 1.1 wants `1.0e-4`): convert by the field's type."""
    kind = str(next(f.type for f in dataclasses.fields(cls) if f.name == name)).split(" ")[0]
    if isinstance(value, str) and kind in ("float", "int"):
        try:
            return float(value) if kind == "float" else int(value)
        except ValueError:
            raise ValueError(f"{name} must be a number, got {value!r}") from None
    if isinstance(value, int) and not isinstance(value, bool) and kind == "float":
        return float(value)
    return value


def load_recipe(path: Path | None, overrides: dict[str, Any]) -> Recipe:
    """Recipe from YAML `path` (None: defaults) with `overrides` (field name -> value) on top."""
    raw: dict[str, Any] = {}
    if path is not None:
        if not Path(path).is_file():
            raise FileNotFoundError(f"recipe {path} does not exist (see finetune/recipes/)")
        raw = yaml.safe_load(Path(path).read_text()) or {}
    unknown = set(raw) - set(SECTIONS)
    if unknown:
        raise ValueError(
            f"recipe {path}: unknown section(s) {sorted(unknown)}; use {sorted(SECTIONS)}"
        )
    values: dict[str, dict[str, Any]] = {name: dict(raw.get(name) or {}) for name in SECTIONS}
    owner = _field_owner()
    for section, items in values.items():
        names = {f.name for f in dataclasses.fields(SECTIONS[section])}
        bad = set(items) - names
        if bad:
            hint = {b: owner[b] for b in bad if b in owner}
            raise ValueError(
                f"recipe {path}: unknown key(s) {sorted(bad)} in section {section!r}"
                + (f" (they belong to: {hint})" if hint else "")
            )
    for name, value in overrides.items():
        values[owner[name]][name] = value
    return Recipe(
        **{
            name: SECTIONS[name](
                **{k: _coerce(SECTIONS[name], k, v) for k, v in values[name].items()}
            )
            for name in SECTIONS
        }
    )


def parse_args(argv: list[str] | None) -> Recipe:
    """Parse `argv` (recipe + overrides) into a `Recipe`."""
    namespace = vars(build_parser().parse_args(argv))
    path = namespace.pop("recipe", None)
    return load_recipe(path, namespace)
