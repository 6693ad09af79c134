"""Scene names from class folders: eurosat-ms (13-band Sentinel-2), aid-scenes, ucmerced (RGB).

Per image, three records: the scene's name, a four-option multiple-choice question built from
the class list (three distractors drawn from the other classes, the answer's letter placed at
random), and a yes/no "is this mainly X?" (half with the image's class, half with another).
Folder names become words ("HerbaceousVegetation" -> "herbaceous vegetation", "SeaLake" -> "sea
or lake"). Randomness comes from a generator seeded by (seed, dataset, file name).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np

from instruct_data.bands import s2_wavelengths
from instruct_data.objects import licence_meta
from instruct_data.schema import Conversation, ImageRef, Turn

__all__ = ["SCENE_SETS", "class_words", "scene_records"]

#: Dataset -> (file suffixes, modality, band names or None for RGB).
EUROSAT_BANDS = [
    "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B10", "B11", "B12",
]  # fmt: skip
SCENE_SETS: dict[str, tuple[tuple[str, ...], str, list[str] | None]] = {
    "eurosat-ms": ((".tif",), "multispectral", EUROSAT_BANDS),
    "aid-scenes": ((".jpg",), "optical", None),
    "ucmerced": ((".png", ".tif"), "optical", None),
}
_WORDS = {"SeaLake": "sea or lake", "denseresidential": "dense residential",
          "mediumresidential": "medium residential", "sparseresidential": "sparse residential",
          "baseballdiamond": "baseball diamond", "golfcourse": "golf course",
          "mobilehomepark": "mobile home park", "parkinglot": "parking lot",
          "storagetanks": "storage tanks", "tenniscourt": "tennis court"}  # fmt: skip
SCENE_PROMPTS = (
    "What kind of scene does this image show? Answer with the scene class.",
    "Name the land-use class of this image.",
    "Which scene category is this?",
)
MCQ_PROMPT = "Which scene class best describes this image?"
MCQ_INSTRUCTIONS = ("Answer with the letter.", "Reply with A, B, C or D.")
PRESENCE_PROMPT = "Is this image mainly {cls}? Answer yes or no."


def class_words(folder: str) -> str:
    """A class folder's name as words: 'HerbaceousVegetation' -> 'herbaceous vegetation'."""
    if folder in _WORDS:
        return _WORDS[folder]
    return re.sub(r"(?<=[a-z])(?=[A-Z])", " ", folder).lower()


def _rng(seed: int, *parts: str) -> np.random.Generator:
    digest = hashlib.sha256("|".join([str(seed), *parts]).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _image(dataset: str, rel: str) -> ImageRef:
    _, modality, bands = SCENE_SETS[dataset]
    if bands is None:
        return ImageRef(path=rel, modality=modality)
    return ImageRef(
        path=rel, modality=modality, band_names=bands, wavelengths=s2_wavelengths(bands)
    )


def scene_records(
    root: Path, dataset: str, seed: int = 0, skipped: dict[str, int] | None = None
) -> Iterator[Conversation]:
    """The records of the scene set ``root/dataset`` (class folders of images)."""
    suffixes = SCENE_SETS[dataset][0]
    base = root / dataset
    classes = sorted(p.name for p in base.iterdir() if p.is_dir())
    if len(classes) < 4:
        raise ValueError(f"{base}: {len(classes)} class folders; a scene set needs at least 4")
    for folder in classes:
        for path in sorted((base / folder).iterdir()):
            if path.suffix.lower() not in suffixes or not path.is_file() or path.is_symlink():
                if skipped is not None:
                    skipped["not an image file"] = skipped.get("not an image file", 0) + 1
                continue
            rel = path.relative_to(root).as_posix()
            rng = _rng(seed, dataset, rel)
            name = class_words(folder)
            image = _image(dataset, rel)
            meta = {
                **licence_meta(dataset),
                "class": name,
                "classes": [class_words(c) for c in classes],
            }
            stem = f"{dataset}:{folder}/{path.stem}"
            prompt = SCENE_PROMPTS[int(rng.integers(len(SCENE_PROMPTS)))]
            yield _conv(f"{stem}:scene", dataset, "vqa", image, prompt, f"{name}.", meta, "scene")
            others = [c for c in classes if c != folder]
            options = [class_words(c) for c in rng.choice(others, 3, replace=False)]
            answer = int(rng.integers(4))
            options.insert(answer, name)
            letters = "ABCD"
            listed = "\n".join(f"{letters[k]}. {o}" for k, o in enumerate(options))
            instruction = MCQ_INSTRUCTIONS[int(rng.integers(len(MCQ_INSTRUCTIONS)))]
            mcq_meta = {**meta, "options": options, "answer": letters[answer]}
            yield _conv(
                f"{stem}:mcq", dataset, "mcq", image, f"{MCQ_PROMPT}\n{listed}\n{instruction}",
                letters[answer], mcq_meta, "scene_mcq",
            )  # fmt: skip
            yes = bool(rng.integers(2))
            asked = name if yes else class_words(str(rng.choice(others)))
            yes_meta = {**meta, "asked": asked, "answer": "yes" if yes else "no"}
            yield _conv(
                f"{stem}:presence", dataset, "vqa", image, PRESENCE_PROMPT.format(cls=asked),
                "Yes." if yes else "No.", yes_meta, "presence",
            )  # fmt: skip


def _conv(
    ident: str, dataset: str, task: str, image: ImageRef, prompt: str, answer: str,
    meta: dict, gen_task: str,
) -> Conversation:  # fmt: skip
    return Conversation(
        id=ident,
        source=dataset,
        task=task,
        images=[image],
        turns=[Turn("user", f"<image>\n{prompt}"), Turn("assistant", answer)],
        meta={**meta, "gen_task": gen_task},
    )
