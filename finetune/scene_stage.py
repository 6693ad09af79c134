"""`python -m finetune.scene_stage`: the scene head trained on labelled scene images.

    python -m finetune.scene_stage --model runs/skyeye-tiny/change/model \
        --data runs/skyeye-tiny/data/objects/train.jsonl --shared-data ../shared/data \
        --out runs/skyeye-tiny/scene/model

The model gains a scene head (``config.scene_head``; `skyeye.modeling.scene_head`); the LLM,
LoRA, tower, projector and mask decoders are frozen and unchanged. Every one-image record whose
``meta`` names its ``class`` and the ``classes`` of its dataset gives one (image, class) pair
(an image asked about several times counts once); the tower's pooled features are computed once,
and the head is trained contrastively, each image against its own dataset's class names (CLIP's
loss, names read through the LLM's embeddings). A seeded share of the images (``--val-share``) is
kept out and scored, so the log says how well the head names scenes of the datasets it trained
on; transfer to datasets it never saw is measured by ``skyeye.evaluation.transfer``.

The stage runs in a minute or two and is deterministic for a seed: an interrupted run is rerun
whole and reaches the same weights, so it keeps no checkpoints.
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch.nn import functional as F
from tqdm import tqdm

from finetune.args import not_positive
from skyeye.atomic import write_text

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ScenePair:
    """One labelled image: its record's image entry, the folder its path is relative to, its
    class and its dataset's class list."""

    image: dict[str, Any]
    root: Path
    dataset: str
    label: str
    classes: tuple[str, ...]


def read_scene_pairs(
    path: Path, shared: Path | None = None
) -> tuple[list[ScenePair], Counter[str]]:
    """The (image, class) pairs of a JSONL file, one per image, and the skipped lines by reason.

    Image paths are relative to the file's folder, or to ``shared`` for records whose
    ``meta.image_root`` is "shared" (`instruct_data.objects` writes the scene sets' paths so).
    """
    pairs: dict[str, ScenePair] = {}
    skipped: Counter[str] = Counter()
    with open(path, encoding="utf-8") as src:
        for line in src:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                meta, images = record["meta"], record["images"]
                if not isinstance(meta, dict) or not isinstance(images, list):
                    raise TypeError("meta must be an object and images a list")
            except (ValueError, KeyError, TypeError):
                skipped["not a record"] += 1
                continue
            label, classes = meta.get("class"), meta.get("classes")
            if not isinstance(label, str) or not isinstance(classes, list) or len(classes) < 2:
                skipped["not a scene record (no meta.class and meta.classes)"] += 1
            elif label not in classes:
                skipped["class not in its class list"] += 1
            elif len(images) != 1 or not isinstance(images[0], dict) or "path" not in images[0]:
                skipped["not one image"] += 1
            elif meta.get("image_root") == "shared" and shared is None:
                skipped["image under the shared data folder (give --shared-data)"] += 1
            else:
                root = shared if meta.get("image_root") == "shared" else path.parent
                key = f"{root}|{images[0]['path']}"
                pair = ScenePair(images[0], root, str(meta.get("dataset")), label, tuple(classes))
                pairs.setdefault(key, pair)
    return list(pairs.values()), skipped


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m finetune.scene_stage", description=__doc__.split("\n\n")[0]
    )
    p.add_argument("--model", required=True, help="model folder (the change stage's output)")
    p.add_argument(
        "--data",
        type=Path,
        required=True,
        help="records with meta.class and meta.classes (the training records of "
        "instruct_data.objects, DATA/objects/train.jsonl in the recipe); image paths are "
        "relative to this file's folder, or to --shared-data where meta.image_root is 'shared'",
    )
    p.add_argument(
        "--shared-data", type=Path, default=None, help="the shared data folder (../shared/data)"
    )
    p.add_argument("--out", type=Path, required=True, help="model folder to write")
    p.add_argument("--steps", type=int, default=1500)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--weight-decay", type=float, default=0.05)
    p.add_argument(
        "--noise",
        type=float,
        default=0.1,
        help="Gaussian noise added to the standardised image features while training (a "
        "regulariser: a few hundred images per dataset)",
    )
    p.add_argument("--dim", type=int, default=128, help="width of the image-name space")
    p.add_argument(
        "--val-share", type=float, default=0.2, help="share of the images kept out and scored"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--read-size", type=int, default=512, help="longest side images are read at")
    p.add_argument("--save-dtype", default="bfloat16", choices=["bfloat16", "float32"])
    return p


def pooled_features(
    model: Any, processor: Any, pairs: list[ScenePair], read_size: int
) -> tuple[torch.Tensor, list[int], Counter[str]]:
    """(n, D_vision) pooled tower features of the readable images, their indices in ``pairs``,
    and the unreadable ones counted by reason."""
    from skyeye.data.record_image import read_record_image
    from skyeye.modeling.scene_head import SceneHead

    rows, kept, skipped = [], [], Counter[str]()
    for i, pair in enumerate(tqdm(pairs, desc="scene images", unit="img")):
        try:
            raster = read_record_image(pair.image, pair.root, max_size=read_size)
        except (ValueError, OSError) as err:
            skipped[f"unreadable image ({type(err).__name__})"] += 1
            continue
        feats = processor.image_features([raster])
        with torch.no_grad():
            vision, _ = model.encode_images(feats["pixel_values"], feats["wavelengths"])
        rows.append(SceneHead.pool(vision)[0])
        kept.append(i)
    return torch.stack(rows), kept, skipped


def name_table(model: Any, tokenizer: Any, names: list[str]) -> torch.Tensor:
    """(K, D_text) embeddings of class names, as the chat reads them (`scene_name_ids`)."""
    from skyeye.chat.scene_choice import scene_name_ids
    from skyeye.modeling.scene_head import SceneHead

    table = model.language_model.get_input_embeddings().weight.detach()
    return SceneHead.embed_names(scene_name_ids(tokenizer, names), table)


def train_scene_head(
    head: Any,
    feats: torch.Tensor,
    labels: list[int],
    groups: list[int],
    names: list[torch.Tensor],
    args: argparse.Namespace,
) -> list[float]:
    """Train ``head`` in place: each image (feats (n, D)) against the names of its group
    (``names[group]`` (K_g, D_text)); returns the loss every 100 steps."""
    gen = torch.Generator().manual_seed(args.seed)
    opt = torch.optim.AdamW(head.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    y, g = torch.tensor(labels), torch.tensor(groups)
    std = head.feature_std
    losses = []
    head.train()
    for step in tqdm(range(args.steps), desc="scene head", unit="step"):
        idx = torch.randint(len(feats), (args.batch_size,), generator=gen)
        noise = torch.randn(len(idx), feats.shape[1], generator=gen) * std * args.noise
        loss = feats.new_zeros(())
        for group in g[idx].unique().tolist():
            sel = idx[g[idx] == group]
            logits = head(feats[sel] + noise[g[idx] == group], names[group])
            loss = loss + F.cross_entropy(logits, y[sel], reduction="sum")
        loss = loss / len(idx)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 100 == 0 or step == args.steps - 1:
            losses.append(round(loss.item(), 4))
    head.eval()
    return losses


def pick_top_k(scores: list[torch.Tensor], labels: list[int], seed: int) -> tuple[int, float]:
    """The rank cut-off k (1..half the longest class list) that best tells each image's own
    class (rank <= k: yes) from a seeded other class of its list (no), and that accuracy.
    ``scores``: per image, its (K,) scores against its own class list; ``labels`` its class."""
    rng = random.Random(seed)
    asked: list[tuple[int, bool]] = []  # (rank of the asked name, whether it is the image's)
    for row, label in zip(scores, labels, strict=True):
        other = rng.choice([c for c in range(len(row)) if c != label])
        for c, truth in ((label, True), (other, False)):
            asked.append((int((row > row[c]).sum()) + 1, truth))
    longest = max(len(row) for row in scores)
    best = max(
        range(1, max(1, longest // 2) + 1),
        key=lambda k: (sum((rank <= k) == truth for rank, truth in asked), -k),
    )
    right = sum((rank <= best) == truth for rank, truth in asked)
    return best, round(right / len(asked), 4)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    error = not_positive(args, ("steps", "batch_size", "dim", "read_size"))
    if error:
        print(error, file=sys.stderr)
        return 2
    if not 0.0 <= args.val_share < 1.0:
        print("error: --val-share must be in [0, 1)", file=sys.stderr)
        return 2
    if not args.data.is_file():
        print(f"error: {args.data} does not exist", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    from skyeye.modeling.model import SkyEyeForConditionalGeneration
    from skyeye.modeling.scene_head import SceneHead
    from skyeye.processing.processor import SkyEyeProcessor

    pairs, skipped = read_scene_pairs(args.data, args.shared_data)
    if not pairs:
        print(
            f"error: {args.data} holds no one-image record with meta.class and meta.classes; "
            "give the training records of python -m instruct_data.objects (OUT/train.jsonl)",
            file=sys.stderr,
        )
        return 2
    model = SkyEyeForConditionalGeneration.from_pretrained(args.model).eval()
    processor = SkyEyeProcessor.from_pretrained(args.model)
    model.requires_grad_(False)
    feats, kept, unreadable = pooled_features(model, processor, pairs, args.read_size)
    skipped.update(unreadable)
    pairs = [pairs[i] for i in kept]
    lists = sorted({p.classes for p in pairs})
    labels = [p.classes.index(p.label) for p in pairs]
    groups = [lists.index(p.classes) for p in pairs]
    order = list(range(len(pairs)))
    random.Random(args.seed).shuffle(order)
    n_val = int(round(args.val_share * len(order)))
    val, train = sorted(order[:n_val]), sorted(order[n_val:])

    # Built from a seeded generator: every run starts from the same head.
    torch.manual_seed(args.seed)
    model.config.scene_head, model.config.scene_head_dim = True, args.dim
    head = SceneHead(model.config)
    head.feature_mean.copy_(feats[train].mean(0))
    head.feature_std.copy_(feats[train].std(0) + 1e-6)
    names = [name_table(model, processor.tokenizer, list(c)) for c in lists]
    losses = train_scene_head(
        head,
        feats[train],
        [labels[i] for i in train],
        [groups[i] for i in train],
        names,
        args,
    )
    report: dict[str, Any] = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "images": {"train": len(train), "val": len(val)},
        "datasets": dict(Counter(p.dataset for p in pairs)),
        "skipped": dict(skipped),
        "losses": losses,
    }
    # Scored once: the kept-out images (the training ones when none is kept out).
    scored = val or train
    with torch.no_grad():
        scores = [head(feats[i : i + 1], names[groups[i]])[0] for i in scored]
    # "Mainly X?" of a name the decoder does not outline is answered by X's rank among the trained
    # names: the cut-off is the one that answers the kept-out images' own class (yes) and a
    # seeded other class (no) best.
    top_k, calibration = pick_top_k(scores, [labels[i] for i in scored], args.seed)
    names_all = sorted({n for c in lists for n in c})
    model.config.scene_names, model.config.scene_top_k = names_all, top_k
    report["presence_top_k"] = {"k": top_k, "accuracy": calibration}
    if val:
        right = [int(row.argmax()) == labels[i] for row, i in zip(scores, val, strict=True)]
        report["val_accuracy"] = sum(right) / len(right)
        logger.info(
            "scene head: %.1f %% right on %d kept-out images",
            100 * sum(right) / len(right),
            len(val),
        )
    model.scene_head = head
    dtype = torch.bfloat16 if args.save_dtype == "bfloat16" else None
    model.save_pretrained(args.out, processor=processor, dtype=dtype)
    write_text(args.out.parent / "scene_stage_log.json", json.dumps(report, indent=1) + "\n")
    logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
