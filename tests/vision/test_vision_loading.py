"""Loading DOFA-CLIP open_clip folders, torchgeo DOFA files and hub ids, strictly."""

from __future__ import annotations

import shutil
from unittest import mock

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from skyeye.modeling.vision import CheckpointKeyError, get_vision_config, load_vision_tower
from skyeye.modeling.vision.loading import heads_from_open_clip_config

_CONV2D = F.conv2d  # patched below; keep the real one
TORCHGEO_V1 = {"family": "dofa_v1", "class_token": True, "embed_padding": 1}


def _padding_0_conv(*args, **kwargs):
    """torchgeo's DOFAEmbedding with DOFA-CLIP's padding (0) -- the GeoLB embedding maths."""
    kwargs["padding"] = 0
    return _CONV2D(*args, **kwargs)


def test_open_clip_folder_loads_and_matches_reference(tmp_path, builders) -> None:
    state = builders.write_dofa_clip_folder(tmp_path / "clip", seed=3)
    tower = load_vision_tower(tmp_path / "clip")
    cfg = tower.config
    assert (cfg.family, cfg.hidden_size, cfg.num_hidden_layers, cfg.patch_size) == (
        "dofa_clip",
        32,
        2,
        4,
    )
    assert (cfg.image_size, cfg.num_attention_heads, cfg.embed_padding) == (16, 2, 0)
    for key, value in tower.state_dict().items():
        assert torch.equal(value, state[f"visual.{key}"])

    reference = builders.build_geolb_trunk(seed=3)
    x, waves = torch.randn(2, 3, 16, 16), torch.tensor([0.665, 0.56, 0.49])
    with torch.no_grad(), mock.patch("torchgeo.models.dofa.F.conv2d", _padding_0_conv):
        tokens, _ = reference.patch_embed(x, waves)
        tokens = reference.blocks(reference._pos_embed(tokens))
        expected_pooled = reference.attn_pool(reference.norm(tokens))
    with torch.no_grad():
        torch.testing.assert_close(tower(x, waves), tokens, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(tower.pooled(x, waves), expected_pooled, atol=1e-5, rtol=1e-5)


def test_open_clip_safetensors_file_alone_loads(tmp_path, builders) -> None:
    builders.write_dofa_clip_folder(tmp_path / "clip")
    tower = load_vision_tower(
        tmp_path / "clip" / "open_clip_model.safetensors", config=get_vision_config("tiny-test")
    )
    assert tower.config.family == "dofa_clip"


def test_extra_key_is_named(tmp_path, builders) -> None:
    extra = {"visual.trunk.blocks.0.attn.q_bias": torch.zeros(32)}
    builders.write_dofa_clip_folder(tmp_path / "clip", extra_keys=extra)
    with pytest.raises(CheckpointKeyError, match=r"1 unexpected key\(s\): trunk\.blocks\.0\.attn"):
        load_vision_tower(tmp_path / "clip")


def test_missing_key_is_named(tmp_path, builders) -> None:
    builders.write_dofa_clip_folder(tmp_path / "clip", drop_keys=("visual.trunk.norm.bias",))
    with pytest.raises(CheckpointKeyError, match=r"1 missing key\(s\): trunk\.norm\.bias") as err:
        load_vision_tower(tmp_path / "clip", config=get_vision_config("tiny-test"))
    assert err.value.missing == ["trunk.norm.bias"]


def test_unknown_top_level_key_is_named(tmp_path, builders) -> None:
    builders.write_dofa_clip_folder(tmp_path / "clip", extra_keys={"visual.proj": torch.zeros(2)})
    with pytest.raises(CheckpointKeyError, match="visual.proj"):
        load_vision_tower(tmp_path / "clip")


def test_many_bad_keys_are_summarised() -> None:
    err = CheckpointKeyError("x", missing=[f"k{i:02d}" for i in range(25)], unexpected=[])
    assert "25 missing" in str(err) and "k09" in str(err) and "+15 more" in str(err)
    assert "k10" not in str(err)


def test_open_clip_heads_come_from_the_config() -> None:
    so400m = {"vision_cfg": {"timm_model_name": "dofa_vit_so400m_patch14_siglip_384"}}
    assert heads_from_open_clip_config(so400m) == 16
    assert heads_from_open_clip_config({"vision_cfg": {"heads": 6}}) == 6
    assert heads_from_open_clip_config({"vision_cfg": {"timm_model_name": "other"}}) is None


@pytest.mark.parametrize("global_pool", [True, False])
@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_torchgeo_dofa_parity(tmp_path, builders, rgbn, global_pool, suffix) -> None:
    reference = builders.build_torchgeo_dofa(seed=5, global_pool=global_pool)
    path = tmp_path / f"dofa{suffix}"
    if suffix == ".pth":
        torch.save(reference.state_dict(), path)
    else:
        save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
    pool = "avg" if global_pool else "token"
    config = get_vision_config("tiny-test", **TORCHGEO_V1, global_pool=pool, num_classes=5)
    tower = load_vision_tower(path, config=config)
    x, waves = rgbn
    captured = {}
    reference.blocks[-1].register_forward_hook(lambda m, i, o: captured.update(last=o))
    with torch.no_grad():
        emb, _ = reference.patch_embed(x, waves)
        features = reference.forward_features(x, waves.tolist())
        logits = reference(x, waves.tolist())
        torch.testing.assert_close(tower.trunk.patch_embed(x, waves), emb, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(tower(x, waves), captured["last"][:, 1:], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(tower.pooled(x, waves), features, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(tower.trunk(x, waves), logits, atol=1e-5, rtol=1e-5)


def test_torchgeo_config_is_inferred_from_shapes(tmp_path, builders) -> None:
    reference = builders.build_torchgeo_dofa(global_pool=True, num_classes=5)
    torch.save({"model": reference.state_dict()}, tmp_path / "wrapped.pth")
    with pytest.raises(ValueError, match="head count"):
        load_vision_tower(tmp_path / "wrapped.pth")  # width 32: no 64-wide heads to assume
    from skyeye.modeling.vision.checkpoint import infer_trunk_config, read_state_dict

    cfg = infer_trunk_config(read_state_dict(tmp_path / "wrapped.pth"), num_heads=2)
    assert (cfg.family, cfg.global_pool, cfg.num_classes, cfg.embed_padding) == (
        "dofa_v1",
        "avg",
        5,
        1,
    )
    assert (cfg.image_size, cfg.patch_size, cfg.mlp_hidden_size, cfg.final_norm) == (
        16,
        4,
        128,
        True,
    )


def test_mae_checkpoint_without_norm_or_head(tmp_path, builders) -> None:
    # torchgeo's published DOFA v1 files carry no fc_norm/head (torchgeo re-creates them).
    state = builders.build_torchgeo_dofa(num_classes=0).state_dict()
    state = {k: v for k, v in state.items() if not k.startswith("fc_norm.")}
    torch.save(state, tmp_path / "mae.pth")
    config = get_vision_config("tiny-test", **TORCHGEO_V1, global_pool="avg", final_norm=False)
    tower = load_vision_tower(tmp_path / "mae.pth", config=config)
    assert tower.pooled(torch.randn(1, 3, 16, 16), torch.tensor([0.6, 0.5, 0.4])).shape == (1, 32)
    with pytest.raises(CheckpointKeyError, match="trunk.fc_norm.weight"):
        load_vision_tower(
            tmp_path / "mae.pth",
            config=get_vision_config("tiny-test", **TORCHGEO_V1, global_pool="avg"),
        )


def _fake_hub_cache(cache, repo_id, source_folder) -> None:
    """The layout huggingface_hub leaves after a download: refs/main -> snapshots/<sha>/."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    sha = "0123456789abcdef0123456789abcdef01234567"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    shutil.copytree(source_folder, repo / "snapshots" / sha)


def test_hub_id_resolves_from_cache_offline(tmp_path, builders) -> None:
    builders.write_dofa_clip_folder(tmp_path / "clip")
    _fake_hub_cache(tmp_path / "hub", "earthflow/GeoLB-tiny", tmp_path / "clip")
    for source in ("hf-hub:earthflow/GeoLB-tiny", "earthflow/GeoLB-tiny"):
        tower = load_vision_tower(source, cache_dir=tmp_path / "hub", local_files_only=True)
        assert tower.config.family == "dofa_clip"


def test_uncached_hub_id_offline_names_the_id(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="earthflow/not-here"):
        load_vision_tower("hf-hub:earthflow/not-here", cache_dir=tmp_path, local_files_only=True)


def test_unknown_source_and_folder_are_explained(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="neither an existing"):
        load_vision_tower(tmp_path / "nope" / "deeper" / "x.pth")
    with pytest.raises(FileNotFoundError, match="open_clip_config.json"):
        load_vision_tower(tmp_path)
