"""The change decoder: registered, Siamese over two dates on one grid, reached by a `[SEG]` whose
`seg_image_index` names a pair; `mask_change` off keeps folders and masks as they were."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from skyeye_testing import make_tiny_model

from skyeye.io.raster import RasterImage
from skyeye.modeling.mask_decoders import CHANGE_DECODERS, ChangeDecoder, get_change_decoder
from skyeye.modeling.mask_decoders.change import ChangeMaskHead
from skyeye.modeling.model import SkyEyeForConditionalGeneration

HIRES = dict(
    use_mask_head=True,
    mask_head_hidden_size=32,
    mask_decoder="hires",
    mask_hires_dim=8,
    mask_hires_ratios=2,
    mask_hires_indices=True,
    image_processor_kwargs={"hires_size": 20},
)


@pytest.fixture
def change_model(tiny_llm_dir):
    return make_tiny_model(tiny_llm_dir, mask_change=True, **HIRES)


def _image(h: int = 18, w: int = 18, seed: int = 0, square: bool = False) -> RasterImage:
    rng = np.random.default_rng(seed)
    data = rng.uniform(40, 60, size=(4, h, w)).astype(np.float32)
    if square:
        data[:, 4:10, 4:10] = 240.0
    return RasterImage(
        data=data, band_names=["B", "G", "R", "NIR"], wavelengths=[0.49, 0.56, 0.665, 0.842]
    )


def _prompt(processor, images):
    content = "".join(f"Image {k + 1}: <image>\n" for k in range(len(images))) + "What changed?"
    return processor([{"role": "user", "content": content}], images)


def test_change_decoder_is_registered_and_follows_its_protocol(change_model):
    model, _ = change_model
    assert get_change_decoder("change") is ChangeMaskHead is CHANGE_DECODERS["change"]
    assert isinstance(model.change_head, ChangeMaskHead)
    assert isinstance(model.change_head, ChangeDecoder)
    with pytest.raises(KeyError, match="unknown change decoder"):
        get_change_decoder("nope")


def test_change_head_reads_both_dates_and_their_difference(change_model):
    model, _ = change_model
    head = model.change_head.eval()
    with torch.no_grad():  # a trained-like classifier, so the pixels matter
        torch.nn.init.normal_(head.hires_hyper[2].weight)
        torch.nn.init.normal_(head.index_hyper.weight)
    d_vis = model.config.vision_config.hidden_size
    seg = torch.randn(1, model.config.text_config.hidden_size)
    v1, v2 = torch.randn(1, 16, d_vis), torch.randn(1, 16, d_vis)
    p1, p2 = torch.rand(4, 12, 12) * 2 - 1, torch.rand(4, 12, 12) * 2 - 1
    w = torch.tensor([0.49, 0.56, 0.665, 0.842])
    with torch.no_grad():
        out = head(seg, v1, v2, (4, 4), None, [p1], [p2], [w], [w])
        same = head(seg, v1, v1, (4, 4), None, [p1], [p1], [w], [w])
        moved = head(seg, v1, v2, (4, 4), None, [p1], [p2 + 0.5], [w], [w])
        other_tokens = head(seg, v2, v2, (4, 4), None, [p1], [p2], [w], [w])
    assert out.shape == (1, 12, 12) and out.dtype == torch.float32
    assert not torch.equal(out, same)  # the after date matters
    assert not torch.equal(out, moved)  # full-resolution pixel difference matters
    assert not torch.equal(out, other_tokens)  # the before date's tokens matter
    # A date pair with no difference looks the same wherever the (identical) dates are bright.
    flat = torch.zeros(4, 12, 12)
    with torch.no_grad():
        a = head(seg, v1, v1, (4, 4), None, [flat], [flat], [w], [w])
        b = head(seg, v1, v1, (4, 4), None, [flat + 0.3], [flat + 0.3], [w], [w])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="different grids"):
        head(seg, v1, v2, (4, 4), None, [p1], [torch.zeros(4, 10, 12)], [w], [w])


def test_a_pair_in_seg_image_index_makes_a_change_mask_and_plain_segs_stay(change_model):
    model, processor = change_model
    model.eval()
    images = [_image(seed=1), _image(seed=2, square=True)]
    prompt = _prompt(processor, images)
    seg = processor.tokenizer.convert_tokens_to_ids("[SEG]")
    answer = torch.tensor([[seg, seg]])
    plain, index = model.predict_masks(prompt, answer)
    mixed, mixed_index = model.predict_masks(prompt, answer, [1, (0, 1)])
    assert index.tolist() == mixed_index.tolist() == [1, 1]
    assert mixed.shape == (2, 18, 18)
    # the mask head's mask (decoded alone, so batched matrix products may differ in the last bit)
    torch.testing.assert_close(mixed[0], plain[0].float(), atol=1e-6, rtol=0)
    assert not torch.equal(mixed[1], plain[1].float())  # the change head's
    # Training: a pair's target trains the change head (and only it, for that [SEG]).
    example = processor.build_training_example(
        [
            {"role": "user", "content": "Image 1: <image>\nImage 2: <image>\nWhat changed?"},
            {"role": "assistant", "content": "<p>changed land cover</p> [SEG]"},
        ],
        images,
    )
    batch = {k: (v.unsqueeze(0) if torch.is_tensor(v) else v) for k, v in example.items()}
    target = torch.zeros(1, 18, 18)
    target[0, 4:10, 4:10] = 1
    model.train()
    out = model(**batch, masks=target, seg_image_index=[(0, 1)])
    out.loss.backward()
    assert model.change_head.pair_fuse[0].weight.grad.abs().sum() > 0
    assert model.mask_head.hires_hyper[0].weight.grad is None


def test_a_pair_without_a_change_decoder_fails_loudly(tiny_llm_dir):
    model, processor = make_tiny_model(tiny_llm_dir, **HIRES)
    assert model.change_head is None
    prompt = _prompt(processor, [_image(seed=1), _image(seed=2)])
    seg = processor.tokenizer.convert_tokens_to_ids("[SEG]")
    with pytest.raises(ValueError, match="no change decoder"):
        model.predict_masks(prompt, torch.tensor([[seg]]), [(0, 1)])


def test_mask_change_off_writes_the_folder_as_before(tiny_llm_dir, tmp_path):
    """Without the change head the config has no `mask_change` key and the weights no
    `change_head.*`: a folder saved before the change decoder existed is what is saved now."""
    model, processor = make_tiny_model(tiny_llm_dir, **HIRES)
    model.save_pretrained(tmp_path / "plain", processor=processor)
    config = json.loads((tmp_path / "plain" / "config.json").read_text())
    assert "mask_change" not in config
    assert "mask_classes" not in config  # likewise the decoder's class list, until one is set
    model.config.mask_classes = ["aircraft", "water"]
    model.save_pretrained(tmp_path / "listed", processor=processor)
    loaded = SkyEyeForConditionalGeneration.from_pretrained(tmp_path / "listed")
    assert loaded.config.mask_classes == ["aircraft", "water"]
    model.config.mask_classes = None
    from safetensors.torch import load_file

    keys = load_file(str(tmp_path / "plain" / "model.safetensors"))
    assert not any(k.startswith("change_head.") for k in keys)
    # The same seed draws the same mask head with and without the change head.
    changed, _ = make_tiny_model(tiny_llm_dir, mask_change=True, **HIRES)
    for (name, a), (_, b) in zip(
        model.mask_head.state_dict().items(), changed.mask_head.state_dict().items(), strict=True
    ):
        assert torch.equal(a, b), name


def test_change_folder_round_trip(change_model, tmp_path):
    model, processor = change_model
    model.eval()
    model.save_pretrained(tmp_path, processor=processor)
    assert json.loads((tmp_path / "config.json").read_text())["mask_change"] is True
    loaded = SkyEyeForConditionalGeneration.from_pretrained(tmp_path).eval()
    images = [_image(seed=1), _image(seed=2, square=True)]
    prompt = _prompt(processor, images)
    seg = processor.tokenizer.convert_tokens_to_ids("[SEG]")
    a, _ = model.predict_masks(prompt, torch.tensor([[seg]]), [(0, 1)])
    b, _ = loaded.predict_masks(prompt, torch.tensor([[seg]]), [(0, 1)])
    torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # An unexpected change_head key in a plain folder fails loudly.
    config = json.loads((tmp_path / "config.json").read_text())
    config["mask_change"] = False
    (tmp_path / "config.json").write_text(json.dumps(config))
    from skyeye.errors import CheckpointKeyError

    with pytest.raises(CheckpointKeyError):
        SkyEyeForConditionalGeneration.from_pretrained(tmp_path)
