"""SkyEyeVisionTower: interface, layer selection, band counts, resizing, presets, round trip."""

from __future__ import annotations

import json

import pytest
import torch

from skyeye.modeling.vision import (
    SkyEyeVisionConfig,
    SkyEyeVisionTower,
    get_vision_config,
    list_vision_configs,
    load_vision_tower,
)

V1 = {"family": "dofa_v1", "class_token": True, "global_pool": "avg", "embed_padding": 1}


def _tower(**overrides) -> SkyEyeVisionTower:
    return SkyEyeVisionTower(get_vision_config("tiny-test", **overrides)).eval()


@pytest.mark.parametrize("overrides", [{}, V1])
def test_forward_returns_patch_tokens_only(overrides, rgbn) -> None:
    tower = _tower(**overrides)
    x, waves = rgbn
    with torch.no_grad():
        feats = tower(x, waves)
        pooled = tower.pooled(x, waves)
    # 16 px / patch 4 -> 16 tokens; the v1 CLS token is never returned.
    assert feats.shape == (2, tower.num_patches, tower.hidden_size) == (2, 16, 32)
    assert pooled.shape == (2, 32)


def test_feature_layer_selects_blocks(rgbn) -> None:
    tower = _tower()
    x, waves = rgbn
    with torch.no_grad():
        last, penult, first = tower(x, waves, -1), tower(x, waves, -2), tower(x, waves, 0)
        default = tower(x, waves)
    assert not torch.allclose(last, penult)
    torch.testing.assert_close(penult, first)  # 2 layers: -2 is block 0
    torch.testing.assert_close(default, last)
    with pytest.raises(ValueError, match="out of range"):
        tower(x, waves, 2)


def test_config_feature_layer_and_norm(rgbn) -> None:
    x, waves = rgbn
    plain = _tower()
    normed = SkyEyeVisionTower(get_vision_config("tiny-test", feature_norm=True)).eval()
    penult = SkyEyeVisionTower(get_vision_config("tiny-test", feature_layer=-2)).eval()
    normed.load_state_dict(plain.state_dict())
    penult.load_state_dict(plain.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(normed(x, waves), plain.trunk.norm(plain(x, waves)))
        torch.testing.assert_close(penult(x, waves), plain(x, waves, -2))
    with pytest.raises(ValueError, match="feature_norm"):
        get_vision_config("tiny-test", **V1, feature_norm=True)


def test_one_set_of_weights_serves_3_4_13_bands() -> None:
    tower = _tower()
    s2 = [0.443, 0.49, 0.56, 0.665, 0.705, 0.74, 0.783, 0.842, 0.865, 0.945, 1.375, 1.61, 2.19]
    outs = {}
    with torch.no_grad():
        for bands in (s2[1:4][::-1], [0.48, 0.56, 0.64, 0.81], s2):
            x = torch.randn(1, len(bands), 16, 16)
            outs[len(bands)] = tower(x, torch.tensor(bands))
    assert {k: tuple(v.shape) for k, v in outs.items()} == {
        3: (1, 16, 32),
        4: (1, 16, 32),
        13: (1, 16, 32),
    }
    assert all(torch.isfinite(v).all() for v in outs.values())


def test_other_image_sizes_interpolate_position_embeddings(rgbn) -> None:
    tower = _tower()
    _, waves = rgbn
    with torch.no_grad():
        assert tower(torch.randn(1, 4, 24, 32), waves).shape == (1, 6 * 8, 32)
        # Tokens depend on position: same patch content at different places differ.
        x = torch.ones(1, 4, 16, 16)
        feats = tower(x, waves, 0)
    assert not torch.allclose(feats[0, 0], feats[0, 5])


def test_wrong_band_count_is_an_error(rgbn) -> None:
    x, waves = rgbn
    with pytest.raises(ValueError, match="got 4 bands"):
        _tower()(x, waves[:3])


@pytest.mark.parametrize("overrides", [{}, {**V1, "num_classes": 3}])
def test_save_and_from_pretrained_round_trip(tmp_path, overrides, rgbn) -> None:
    tower = _tower(**overrides, feature_layer=-2)
    tower.save_pretrained(tmp_path / "tower")
    assert json.loads((tmp_path / "tower" / "config.json").read_text())["model_type"] == (
        "skyeye_vision"
    )
    again = SkyEyeVisionTower.from_pretrained(tmp_path / "tower").eval()
    via_loader = load_vision_tower(tmp_path / "tower")
    assert again.config.to_dict() == tower.config.to_dict()
    for k, v in tower.state_dict().items():
        assert torch.equal(v, again.state_dict()[k]) and torch.equal(v, via_loader.state_dict()[k])
    x, waves = rgbn
    with torch.no_grad():
        assert torch.equal(tower(x, waves), again(x, waves))


def test_from_pretrained_names_missing_files(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="config.json"):
        SkyEyeVisionTower.from_pretrained(tmp_path)


def test_presets() -> None:
    names = list_vision_configs()
    assert {"dofa-clip-so400m-384", "dofa-clip-b16-224", "dofa-v1-base", "dofa-v1-large"} <= set(
        names
    )
    so400m = get_vision_config("dofa-clip-so400m-384")
    assert (so400m.num_patches, so400m.mlp_hidden_size, so400m.num_hidden_layers) == (729, 4304, 27)
    assert get_vision_config("dofa-clip-b16-224").num_patches == 196
    tiny = get_vision_config("dofa-clip-tiny")
    assert (tiny.num_patches, tiny.embed_padding, tiny.global_pool) == (256, 0, "map")
    v1 = get_vision_config("dofa-v1-base")
    assert (v1.class_token, v1.embed_padding, v1.num_patches) == (True, 1, 196)
    with pytest.raises(KeyError, match="dofa-clip-tiny"):
        get_vision_config("dofa-clip-huge")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"family": "sam"}, "family"),
        ({"global_pool": "avg"}, "global_pool"),
        ({"class_token": True}, "CLS"),
        ({"num_attention_heads": 3}, "divisible"),
        ({"embed_padding": 2}, "embed_padding"),
        ({"feature_layer": 6}, "feature_layer"),
    ],
)
def test_config_validation_names_the_field(fields, message) -> None:
    with pytest.raises(ValueError, match=message):
        SkyEyeVisionConfig(**fields)
