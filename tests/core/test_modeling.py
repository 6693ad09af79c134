"""Model: feature merging with a count check, several images with their own bands, save/load."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from skyeye.io.raster import RasterImage
from skyeye.modeling.checkpoint import CheckpointKeyError
from skyeye.modeling.model import SkyEyeForConditionalGeneration
from skyeye.processing.processor import SkyEyeProcessor


def _s2_image(bands: int = 13) -> RasterImage:
    rng = np.random.default_rng(1)
    waves = [0.443, 0.49, 0.56, 0.665, 0.705, 0.74, 0.783, 0.842, 0.865, 0.945, 1.375, 1.61, 2.19]
    return RasterImage(
        data=rng.uniform(0, 255, size=(bands, 20, 20)).astype(np.float32),
        band_names=[f"b{i}" for i in range(bands)],
        wavelengths=waves[:bands],
    )


def test_image_features_land_in_the_image_positions(tiny_model, rgb_image):
    model, processor = tiny_model
    batch = processor([{"role": "user", "content": "<image>\ndescribe this image ."}], [rgb_image])
    embeds, _, features = model.embed_inputs(
        batch["input_ids"], batch["pixel_values"], batch["wavelengths"]
    )
    positions = batch["input_ids"][0] == processor.image_token_id
    assert torch.allclose(embeds[0, positions], features[0])
    text_ids = batch["input_ids"][0, ~positions]
    assert torch.allclose(
        embeds[0, ~positions], model.language_model.get_input_embeddings()(text_ids)
    )


def test_token_feature_count_mismatch_is_an_error(tiny_model, rgb_image):
    model, processor = tiny_model
    batch = processor([{"role": "user", "content": "<image>\ndescribe"}], [rgb_image])
    ids = batch["input_ids"][0]
    first = int((ids == processor.image_token_id).nonzero()[0])
    ids = torch.cat([ids[:first], ids[first + 1 :]]).unsqueeze(0)  # one image position fewer
    with pytest.raises(ValueError, match="Image features and image tokens do not match"):
        model(ids, pixel_values=batch["pixel_values"], wavelengths=batch["wavelengths"])


def test_several_images_with_different_bands_in_one_conversation(tiny_model, rgb_image):
    model, processor = tiny_model
    images = [rgb_image, _s2_image(13), _s2_image(4)]
    batch = processor([{"role": "user", "content": "<image><image><image> describe"}], images)
    out = model(**batch)
    assert out.image_features.shape == (3, model.config.num_image_tokens, 32)
    assert out.logits.shape[:2] == batch["input_ids"].shape
    # Each image is encoded with its own wavelengths: the same pixels with other wavelengths differ.
    a = model.encode_images([batch["pixel_values"][2]], [batch["wavelengths"][2]])[1]
    b = model.encode_images([batch["pixel_values"][2]], [batch["wavelengths"][2] + 0.3])[1]
    assert not torch.allclose(a, b)


def test_band_wavelength_mismatch_is_an_error(tiny_model):
    model, _ = tiny_model
    with pytest.raises(ValueError, match="4 bands but 3 wavelengths"):
        model.encode_images([torch.zeros(4, 16, 16)], [torch.tensor([0.665, 0.56, 0.49])])


def test_training_loss_is_finite_and_backpropagates_to_projector(tiny_model, rgb_image):
    model, processor = tiny_model
    example = processor.build_training_example(
        [
            {"role": "user", "content": "<image>\nis there water ?"},
            {"role": "assistant", "content": "yes ."},
        ],
        [rgb_image],
    )
    batch = {k: (v.unsqueeze(0) if torch.is_tensor(v) else v) for k, v in example.items()}
    out = model(**batch)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    assert model.projector.linear_1.weight.grad.abs().sum() > 0
    assert model.vision_tower.trunk.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


def test_save_load_round_trip_gives_identical_logits(tiny_model, rgb_image, tmp_path):
    model, processor = tiny_model
    model.eval()
    model.save_pretrained(tmp_path, processor=processor)
    loaded = SkyEyeForConditionalGeneration.from_pretrained(tmp_path)
    loaded_processor = SkyEyeProcessor.from_pretrained(tmp_path)
    batch = loaded_processor(
        [{"role": "user", "content": "<image>\ndescribe this image ."}], [rgb_image]
    )
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)
    assert not (tmp_path / "llm").exists()  # the LLM is referenced, not copied
    assert (
        json.loads((tmp_path / "config.json").read_text())["llm_source"] == model.config.llm_source
    )


def test_embedded_llm_round_trip(tiny_model, rgb_image, tmp_path):
    model, processor = tiny_model
    model.eval()
    model.config.llm_embedded = True
    model.save_pretrained(tmp_path, processor=processor)
    assert (tmp_path / "llm" / "model.safetensors").is_file()
    loaded = SkyEyeForConditionalGeneration.from_pretrained(tmp_path)
    batch = processor([{"role": "user", "content": "<image>\ndescribe"}], [rgb_image])
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, loaded(**batch).logits)


def test_unexpected_checkpoint_key_fails_loudly(tiny_model, tmp_path):
    from safetensors.torch import load_file, save_file

    model, processor = tiny_model
    model.save_pretrained(tmp_path, processor=processor)
    state = load_file(tmp_path / "model.safetensors")
    state["projector.extra.weight"] = torch.zeros(1)
    del state["projector.linear_1.bias"]
    save_file(state, tmp_path / "model.safetensors")
    with pytest.raises(
        CheckpointKeyError,
        match=r"missing key\(s\): projector.linear_1.bias.*unexpected key\(s\): projector.extra.weight",
    ):
        SkyEyeForConditionalGeneration.from_pretrained(tmp_path)


def test_generate_returns_new_tokens_and_streams(tiny_model, rgb_image):
    from transformers import TextIteratorStreamer

    model, processor = tiny_model
    batch = processor([{"role": "user", "content": "<image>\ndescribe"}], [rgb_image])
    streamer = TextIteratorStreamer(processor.tokenizer, skip_prompt=True)
    import threading

    result = {}
    thread = threading.Thread(
        target=lambda: result.update(
            ids=model.generate(**batch, max_new_tokens=5, do_sample=False, streamer=streamer)
        )
    )
    thread.start()
    pieces = list(streamer)
    thread.join()
    assert result["ids"].shape[0] == 1 and 1 <= result["ids"].shape[1] <= 5
    assert "".join(pieces).strip() == processor.decode(result["ids"][0]).strip()


def test_saved_adapter_config_is_free_of_machine_paths_and_run_order(tiny_model, tmp_path):
    """The adapter config names the LLM as the model config does (not the cache folder it was
    read from) and lists its targets sorted (peft saves a set, in the process's hash order), so
    two runs of a recipe write the same bytes; peft's placeholder card is not shipped."""
    from peft import LoraConfig, get_peft_model

    model, processor = tiny_model
    targets = ["v_proj", "up_proj", "q_proj", "down_proj", "o_proj", "k_proj", "gate_proj"]
    model.language_model = get_peft_model(
        model.language_model, LoraConfig(r=2, target_modules=targets)
    )
    model.save_pretrained(tmp_path, processor=processor)
    conf = json.loads((tmp_path / "adapter" / "adapter_config.json").read_text())
    assert conf["target_modules"] == sorted(targets)
    assert conf["base_model_name_or_path"] == model.config.llm_source
    assert not (tmp_path / "adapter" / "README.md").exists()
    loaded = SkyEyeForConditionalGeneration.from_pretrained(tmp_path)
    assert set(loaded.language_model.peft_config["default"].target_modules) == set(targets)


def test_lora_adapter_round_trip_attached_or_merged(tiny_model, rgb_image, tmp_path):
    from peft import LoraConfig, get_peft_model

    model, processor = tiny_model
    torch.manual_seed(3)
    model.language_model = get_peft_model(
        model.language_model,
        LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False),
    )
    model.eval()
    model.save_pretrained(tmp_path, processor=processor)
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    batch = processor([{"role": "user", "content": "<image>\ndescribe"}], [rgb_image])
    attached = SkyEyeForConditionalGeneration.from_pretrained(tmp_path)
    merged = SkyEyeForConditionalGeneration.from_pretrained(tmp_path, merge_adapter=True)
    assert hasattr(attached.language_model, "peft_config")
    assert not hasattr(merged.language_model, "peft_config")
    with torch.no_grad():
        reference = model(**batch).logits
        assert torch.allclose(attached(**batch).logits, reference, atol=1e-6)
        assert torch.allclose(merged(**batch).logits, reference, atol=1e-5)
        base = SkyEyeForConditionalGeneration.from_pretrained(tmp_path, load_adapter=False)
        assert not torch.allclose(base(**batch).logits, reference, atol=1e-3)
