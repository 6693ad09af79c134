"""The "hires" mask decoder inside the model: full-resolution pixels from the processor, training
targets on the read grid, masks on each image's grid, folders of both decoders round-trip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skyeye_testing import make_tiny_model

from skyeye.chat.session import ChatSession
from skyeye.io.raster import RasterImage
from skyeye.modeling.model import SkyEyeForConditionalGeneration
from skyeye.processing.processor import SkyEyeProcessor


@pytest.fixture
def hires_model(tiny_llm_dir):
    return make_tiny_model(
        tiny_llm_dir,
        use_mask_head=True,
        mask_head_hidden_size=32,
        mask_decoder="hires",
        mask_hires_dim=8,
        image_processor_kwargs={"hires_size": 20},
    )


def _image(bands: int, h: int, w: int, seed: int = 0) -> RasterImage:
    rng = np.random.default_rng(seed)
    waves = [0.49, 0.56, 0.665, 0.842, 1.61][:bands] if bands <= 5 else None
    return RasterImage(
        data=rng.uniform(0, 255, size=(bands, h, w)).astype(np.float32),
        band_names=[f"b{i}" for i in range(bands)],
        wavelengths=waves,
    )


def _example(processor, images, answer="<p> the lake </p> [SEG]"):
    content = "<image>" * len(images) + "\nsegment the lake"
    ex = processor.build_training_example(
        [{"role": "user", "content": content}, {"role": "assistant", "content": answer}], images
    )
    return {k: (v.unsqueeze(0) if torch.is_tensor(v) else v) for k, v in ex.items()}


def test_hires_pixels_only_when_asked_on_the_read_grid(hires_model, tiny_model):
    _, processor = hires_model
    small, large = _image(4, 12, 18), _image(3, 30, 40)
    out = processor.image_processor([small, large])
    assert [tuple(p.shape) for p in out["pixel_values"]] == [(4, 16, 16), (3, 16, 16)]
    # Kept at the read grid up to hires_size (20), aspect kept above it.
    assert [tuple(p.shape) for p in out["pixel_values_hires"]] == [(4, 12, 18), (3, 15, 20)]
    # Same scaling and normalisation as pixel_values.
    assert out["pixel_values_hires"][0].abs().max() <= 1.0
    _, light_processor = tiny_model
    assert "pixel_values_hires" not in light_processor.image_processor([small])


def test_training_loss_on_full_resolution_targets(hires_model):
    model, processor = hires_model
    batch = _example(processor, [_image(4, 18, 18)])
    assert tuple(batch["pixel_values_hires"][0].shape) == (4, 18, 18)
    target = torch.zeros(18, 18)
    target[:, 7] = 1  # a one-pixel-wide river
    out = model(**batch, masks=[target])
    assert out.mask_logits.shape == (1, 18, 18)
    assert set(out.loss_terms) == {"ce", "bce", "dice"}
    out.loss.backward()
    assert model.mask_head.hires_hyper[2].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="needs pixel_values_hires"):
        model(**{k: v for k, v in batch.items() if k != "pixel_values_hires"}, masks=[target])


def test_masks_on_each_images_grid_and_folder_round_trip(hires_model, tmp_path):
    model, processor = hires_model
    with torch.no_grad():  # a trained-like classifier, so the pixels matter
        torch.nn.init.normal_(model.mask_head.hires_hyper[2].weight)
    model.eval()
    sar = RasterImage(
        data=np.random.default_rng(1).uniform(-25, 0, size=(2, 14, 20)).astype(np.float32),
        band_names=["VV", "VH"],
        wavelengths=[5.405, 5.405],
    )
    images = [_image(4, 18, 18), sar]
    prompt = processor([{"role": "user", "content": "<image><image>\nsegment the lake"}], images)
    seg = processor.tokenizer.convert_tokens_to_ids("[SEG]")
    logits, index = model.predict_masks(prompt, torch.tensor([[seg]]))
    assert index.tolist() == [1]
    assert logits.shape == (1, 14, 20)  # the grid of the image the mask lies on
    model.save_pretrained(tmp_path, processor=processor)
    loaded = SkyEyeForConditionalGeneration.from_pretrained(tmp_path)
    reloaded_processor = SkyEyeProcessor.from_pretrained(tmp_path)
    assert loaded.config.mask_decoder == "hires"
    assert reloaded_processor.image_processor.hires_size == 20
    again, _ = loaded.predict_masks(
        reloaded_processor(
            [{"role": "user", "content": "<image><image>\nsegment the lake"}], images
        ),
        torch.tensor([[seg]]),
    )
    assert torch.allclose(logits, again, atol=1e-5)


def test_session_turns_hires_on_for_a_hires_decoder(hires_model):
    model, processor = hires_model
    processor.image_processor.hires_size = None
    ChatSession(model, processor)
    assert processor.image_processor.hires_size == 512  # the session's read size


def test_light_folders_without_hires_settings_keep_their_masks(tiny_llm_dir, tmp_path):
    """A folder saved before the hires decoder existed (no hires_size, no mask_hires_dim) loads
    as the light decoder, gets no hires pixels and gives the masks it gave before saving."""
    model, processor = make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)
    model.eval()
    model.save_pretrained(tmp_path, processor=processor)
    for name, key in (
        ("preprocessor_config.json", "hires_size"),
        ("config.json", "mask_hires_dim"),
    ):
        settings = json.loads((tmp_path / name).read_text())
        settings.pop(key, None)
        (tmp_path / name).write_text(json.dumps(settings))
    loaded = SkyEyeForConditionalGeneration.from_pretrained(tmp_path)
    loaded_processor = SkyEyeProcessor.from_pretrained(tmp_path)
    assert type(loaded.mask_head).__name__ == "SkyEyeMaskHead"
    image = _image(3, 24, 24)
    prompt = loaded_processor([{"role": "user", "content": "<image>\nsegment"}], [image])
    assert "pixel_values_hires" not in prompt
    seg = processor.tokenizer.convert_tokens_to_ids("[SEG]")
    before, _ = model.predict_masks(prompt, torch.tensor([[seg]]))
    after, _ = loaded.predict_masks(prompt, torch.tensor([[seg]]))
    assert after.shape == (1, 16, 16)
    assert torch.equal(before, after)
