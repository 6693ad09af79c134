"""The [SEG] path of the full model: tokens, image choice, losses, checkpoint rows."""

from __future__ import annotations

import pytest
import torch
from skyeye_testing import make_tiny_model

from skyeye.modeling.model import SkyEyeForConditionalGeneration


@pytest.fixture
def seg_model(tiny_llm_dir):
    return make_tiny_model(tiny_llm_dir, use_mask_head=True, mask_head_hidden_size=32)


def _example(processor, images, answer="<p> the lake </p> [SEG]"):
    content = "<image>" * len(images) + "\nsegment the lake"
    ex = processor.build_training_example(
        [{"role": "user", "content": content}, {"role": "assistant", "content": answer}], images
    )
    return {k: (v.unsqueeze(0) if torch.is_tensor(v) else v) for k, v in ex.items()}


def test_grounding_tokens_are_new_trainable_rows(seg_model):
    model, processor = seg_model
    config = model.config
    assert config.text_base_vocab_size is not None
    assert config.seg_token_id >= config.text_base_vocab_size
    assert (
        model.language_model.get_input_embeddings().weight.shape[0] == config.text_config.vocab_size
    )


def test_mask_losses_join_the_token_loss_with_their_weights(seg_model, rgb_image):
    model, processor = seg_model
    batch = _example(processor, [rgb_image])
    target = torch.zeros(1, 16, 16)
    target[0, 4:12, 4:12] = 1
    out = model(**batch, masks=[target[0]])
    assert set(out.loss_terms) == {"ce", "bce", "dice"}
    expected = out.loss_terms["ce"] + 2.0 * out.loss_terms["bce"] + 0.5 * out.loss_terms["dice"]
    assert torch.allclose(out.loss, expected)
    out.loss.backward()
    assert model.mask_head.text_hidden_fcs[0].weight.grad.abs().sum() > 0
    assert model.vision_tower.trunk.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_one_mask_per_seg_is_required(seg_model, rgb_image):
    model, processor = seg_model
    batch = _example(processor, [rgb_image], answer="[SEG] and [SEG]")
    with pytest.raises(ValueError, match=r"2 \[SEG\] token\(s\) but 1 target mask"):
        model(**batch, masks=[torch.zeros(16, 16)])


def test_no_seg_and_no_masks_trains_the_text_only(seg_model, rgb_image):
    # A sample that segments nothing passes an empty mask list: no [SEG], no masks, no mask loss
    # (issue 11, defect 3: it raised "0 [SEG] token(s) but 0 target mask(s)").
    model, processor = seg_model
    batch = _example(processor, [rgb_image], answer="there is no lake .")
    plain = model(**batch)
    for empty in ([], torch.zeros(0, 16, 16)):
        out = model(**batch, masks=empty)
        assert set(out.loss_terms) == {"ce"}
        assert torch.equal(out.loss, plain.loss)
        assert out.mask_logits.shape[0] == 0


def test_masks_without_seg_name_the_missing_seg(seg_model, rgb_image):
    model, processor = seg_model
    batch = _example(processor, [rgb_image], answer="there is no lake .")
    with pytest.raises(ValueError, match=r"0 \[SEG\] token\(s\) but 1 target mask"):
        model(**batch, masks=[torch.zeros(16, 16)])
    seg = _example(processor, [rgb_image])
    with pytest.raises(ValueError, match=r"1 \[SEG\] token\(s\) but 0 target mask"):
        model(**seg, masks=[])


def test_each_seg_decodes_against_the_last_image_before_it(seg_model, rgb_image):
    model, processor = seg_model
    other = type(rgb_image)(
        data=rgb_image.data[::-1].copy(),
        band_names=["B", "G", "R"],
        wavelengths=[0.49, 0.56, 0.665],
    )
    batch = _example(processor, [rgb_image, other])
    out = model(**batch, output_hidden_states=True)
    embeds, vision, _ = model.embed_inputs(
        batch["input_ids"], batch["pixel_values"], batch["wavelengths"]
    )
    logits, index = model.decode_masks(out.hidden_states[-1], batch["input_ids"], vision, (16, 16))
    assert index.tolist() == [1]
    forced, _ = model.decode_masks(
        out.hidden_states[-1], batch["input_ids"], vision, (16, 16), seg_image_index=[0]
    )
    assert not torch.allclose(logits, forced)


def test_added_token_rows_round_trip_without_copying_the_llm(seg_model, rgb_image, tmp_path):
    model, processor = seg_model
    with torch.no_grad():
        model.language_model.get_input_embeddings().weight[-3:] += 1.0
    model.eval()
    model.save_pretrained(tmp_path, processor=processor)
    loaded = SkyEyeForConditionalGeneration.from_pretrained(tmp_path)
    batch = _example(processor, [rgb_image])
    with torch.no_grad():
        a = model(**batch, masks=[torch.zeros(16, 16)])
        b = loaded(**batch, masks=[torch.zeros(16, 16)])
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.mask_logits, b.mask_logits)
