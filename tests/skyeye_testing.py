"""Builders of the tiny random SkyEye used across the tests (hidden 32, 2 layers, 16-px images).

The tiny LLM is a 2-layer Llama with a word-level tokenizer trained here on a few sentences and
given a ChatML chat template (the same template family as the embedded SmolLM2), so processor
and model logic is tested in milliseconds without any download. Tests import this module as
`skyeye_testing` (a unique name: several folders have a `conftest.py`).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]

CHATML = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
CORPUS = [
    "is there water in this image ? yes there is water in the north .",
    "describe this image . fields forest river city road lake cloud snow",
    "the scene shows farmland with a river and a small town .",
    "how much of the image is forest ? about a third of the image is forest .",
    "no there is no water . segment the lake [SEG] <p> the lake </p>",
    "0 1 2 3 4 5 6 7 8 9 10 20 30 40 50 60 70 80 90 100 { } < > | , .",
    "you are skyeye , an assistant for earth observation imagery .",
]


def one_torch_thread():
    """Fixture body: one torch thread for a module. The scene tests run many tiny ops: on a
    shared 2-core CPU, two threads spin-waiting on each other cost more than they give."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def build_tiny_llm(folder: Path, seed: int = 0) -> Path:
    """Write a tiny Llama + tokenizer with a chat template into `folder`."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    specials = ["<unk>", "<|im_start|>", "<|im_end|>", "<|endoftext|>"]
    tok = Tokenizer(models.WordLevel(unk_token="<unk>"))
    tok.normalizer = normalizers.Lowercase()
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    tok.train_from_iterator(CORPUS * 3, trainers.WordLevelTrainer(special_tokens=specials))
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="<unk>",
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML
    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=512,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def make_tiny_model(llm_dir: Path, **config_overrides):
    """A tiny random SkyEye model and its processor on top of the tiny LLM."""
    from skyeye.modeling.builder import build_model
    from skyeye.modeling.vision import get_vision_config

    torch.manual_seed(0)
    return build_model(
        vision_config=get_vision_config("tiny-test"),
        llm_source=str(llm_dir),
        image_size=16,
        **config_overrides,
    )


def segmenting_chat(llm_dir: Path, max_new_tokens: int = 6):
    """The tiny random SkyEye, scripted to end every answer with [SEG] (so each has a mask)."""
    from skyeye.chat.session import ChatSession, GenerationSettings

    model, processor = make_tiny_model(llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    model.eval()
    seg, eos = model.config.seg_token_id, processor.tokenizer.eos_token_id
    original = model.language_model.generate

    def scripted_generate(*args, **kwargs):
        out = original(*args, **{**kwargs, "max_new_tokens": max(1, kwargs["max_new_tokens"] - 2)})
        return torch.cat([out, torch.tensor([[seg, eos]] * out.shape[0])], dim=1)

    model.language_model.generate = scripted_generate
    return ChatSession(model, processor, GenerationSettings(max_new_tokens=max_new_tokens))


def run_chat_cli(image: Path, prompt: str, *extra: str) -> subprocess.CompletedProcess:
    """`python -m skyeye.chat --model skyeye-tiny --image IMAGE --prompt PROMPT` in a fresh process
    from the repository root (what `make chat` runs); fails the test on a non-zero exit."""
    result = subprocess.run(
        [sys.executable, "-m", "skyeye.chat", "--model", "skyeye-tiny"]
        + ["--image", str(image), "--prompt", prompt, *extra],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return result


#: (height, width) of `write_big_scene`: larger than the default 512-px scene window.
BIG_SHAPE = (600, 640)


def write_big_scene(path: Path) -> Path:
    """The bundled 512 x 512 x 13 Sentinel-2 crop mirrored at its right and bottom edges to
    640 x 600 px, same CRS and origin: a real GeoTIFF larger than the scene window."""
    import numpy as np
    import rasterio

    with rasterio.open(REPO / "examples" / "sentinel2_berlin_l1c.tif") as src:
        data, profile, descriptions = src.read(), src.profile, src.descriptions
    h, w = BIG_SHAPE
    wide = np.concatenate([data, data[:, :, ::-1][:, :, : w - data.shape[2]]], axis=2)
    big = np.concatenate([wide, wide[:, ::-1, :][:, : h - data.shape[1]]], axis=1)
    profile.update(width=w, height=h)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(big)
        dst.descriptions = descriptions
    return path


# ------------------------------------------------------------ change over time (issue 28)
#: Bands and grid of `two_dates`: 10 m pixels in UTM 33N.
CHANGE_WAVES = [0.49, 0.56, 0.665, 0.842]


def change_grid():
    """(transform, crs) of `two_dates`: 10 m pixels, UTM zone 33N."""
    from affine import Affine
    from rasterio.crs import CRS

    return Affine(10.0, 0, 500000.0, 0, -10.0, 5800000.0), CRS.from_epsg(32633)


def disc_mask(radius_px: float, centre=(32.0, 30.0), shape=(64, 64)):
    """A disc rasterised on `change_grid` and its true area in m²: ((H, W) bool, float)."""
    from rasterio.features import rasterize
    from shapely.geometry import Point

    transform, _ = change_grid()
    x, y = transform @ (centre[1], centre[0])
    disc = Point(x, y).buffer(radius_px * abs(transform.a), 256)
    mask = rasterize([(disc, 1)], out_shape=shape, transform=transform).astype(bool)
    return mask, float(disc.area)


def two_dates(nodata_rows: int = 4, seed: int = 0):
    """(before, after, disc area m²): land on 2018-05-01; on 2020-05-01 a lake (`disc_mask(12)`)
    has appeared and the top ``nodata_rows`` rows have no data. Four bands (B, G, R, NIR)."""
    import numpy as np

    from skyeye.io.raster import RasterImage

    rng = np.random.default_rng(seed)
    land = np.array([40.0, 60.0, 50.0, 160.0])[:, None, None]  # NDWI < 0
    water = np.array([50.0, 90.0, 40.0, 20.0])[:, None, None]  # NDWI > 0
    before = land + rng.uniform(-5, 5, size=(4, 64, 64))
    disc, area = disc_mask(12)
    after = np.where(disc, water, land) + rng.uniform(-5, 5, size=(4, 64, 64))
    after[:, :nodata_rows, :] = np.nan
    transform, crs = change_grid()
    images = [
        RasterImage(
            data=d.astype(np.float32),
            band_names=["B", "G", "R", "NIR"],
            wavelengths=CHANGE_WAVES,
            crs=crs,
            transform=transform,
            datetime=day,
        )
        for d, day in ((before, "2018-05-01"), (after, "2020-05-01"))
    ]
    return images[0], images[1], area


def _ndwi(pixels: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) normalised pixels (uint8 scaling, mean = std = 0.5) -> (B, H, W) NDWI."""
    u = pixels.float() + 1.0
    g, n = u[:, 1], u[:, 3]
    return (g - n) / (g + n).clamp_min(1e-3)


class WaterHead(torch.nn.Module):
    """A scripted mask decoder: water wherever NDWI > 0, whatever the [SEG]."""

    needs_pixels = True

    def forward(self, seg_hidden, vision, grid, output_size=None, pixels=None, wavelengths=None):
        return torch.stack([20.0 * _ndwi(p[None])[0] for p in pixels])


class NdwiChangeHead(torch.nn.Module):
    """A scripted change decoder: changed wherever NDWI moved by more than 0.3."""

    needs_pixels = True
    decodes_pairs = True

    def forward(self, seg, vb, va, grid, size, pb, pa, wb, wa):
        return torch.stack(
            [
                20.0 * ((_ndwi(a[None]) - _ndwi(b[None])).abs()[0] - 0.3)
                for a, b in zip(pa, pb, strict=True)
            ]
        )


def change_chat(llm_dir: Path, *, change: bool = True, answer: str = "<p>water</p> [SEG]"):
    """A `ChatSession` over the tiny SkyEye with scripted decoders (`WaterHead`, and
    `NdwiChangeHead` as ``change_head`` when ``change``), whose LLM always answers ``answer``;
    the decoder "knows" water only (no cloud to mask)."""
    from skyeye.chat.session import ChatSession, GenerationSettings

    model, processor = make_tiny_model(
        llm_dir,
        use_mask_head=True,
        mask_head_hidden_size=32,
        mask_decoder="hires",
        mask_change=change,
        image_processor_kwargs={"hires_size": 64, "value_scaling": "uint8"},
    )
    model.mask_head = WaterHead()
    if change:
        model.change_head = NdwiChangeHead()
    model.eval()
    tokenizer = processor.tokenizer
    tokenizer.add_tokens(["gained"])  # the tiny word-level vocabulary has no change word
    model.language_model.resize_token_embeddings(
        max(len(tokenizer), model.config.text_config.vocab_size)
    )
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    scripted = torch.tensor([ids + [tokenizer.eos_token_id]])

    def generate(*args, input_ids=None, streamer=None, **kwargs):
        if streamer is not None:
            streamer.put(input_ids.cpu())
            streamer.put(scripted[0])
            streamer.end()
        return torch.cat([input_ids, scripted.expand(input_ids.shape[0], -1)], dim=1)

    model.language_model.generate = generate
    settings = GenerationSettings(max_new_tokens=20, mask_classes=("water",))
    return ChatSession(model, processor, settings)


def write_tiff(image, path: Path) -> Path:
    """``image`` (a `RasterImage`) as a float32 GeoTIFF at ``path``: NaN nodata, its CRS,
    transform and band names (as descriptions)."""
    import numpy as np
    import rasterio

    count, height, width = image.data.shape
    profile = {"driver": "GTiff", "width": width, "height": height, "count": count}
    profile |= {"dtype": "float32", "crs": image.crs, "transform": image.transform}
    with rasterio.open(path, "w", nodata=float("nan"), **profile) as dst:
        dst.write(image.data.astype(np.float32))
        dst.descriptions = tuple(image.band_names)
    return path
