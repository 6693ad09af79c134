"""DOFA patch embedding: published parameter names/shapes, padding rule, torchgeo parity."""

from __future__ import annotations

import pytest
import torch
from torchgeo.models.dofa import DOFAEmbedding

from skyeye.modeling.vision.patch_embed import DofaPatchEmbed, wavelength_code

EXPECTED_SHAPES = {
    "weight_generator.weight_tokens": (128, 128),
    "weight_generator.bias_token": (1, 128),
    "weight_generator.transformer_encoder.layers.0.self_attn.in_proj_weight": (384, 128),
    "weight_generator.transformer_encoder.layers.0.self_attn.in_proj_bias": (384,),
    "weight_generator.transformer_encoder.layers.0.self_attn.out_proj.weight": (128, 128),
    "weight_generator.transformer_encoder.layers.0.self_attn.out_proj.bias": (128,),
    "weight_generator.transformer_encoder.layers.0.linear1.weight": (2048, 128),
    "weight_generator.transformer_encoder.layers.0.linear1.bias": (2048,),
    "weight_generator.transformer_encoder.layers.0.linear2.weight": (128, 2048),
    "weight_generator.transformer_encoder.layers.0.linear2.bias": (128,),
    "weight_generator.transformer_encoder.layers.0.norm1.weight": (128,),
    "weight_generator.transformer_encoder.layers.0.norm1.bias": (128,),
    "weight_generator.transformer_encoder.layers.0.norm2.weight": (128,),
    "weight_generator.transformer_encoder.layers.0.norm2.bias": (128,),
    "weight_generator.fc_weight.weight": (4 * 4 * 32, 128),
    "weight_generator.fc_weight.bias": (4 * 4 * 32,),
    "weight_generator.fc_bias.weight": (32, 128),
    "weight_generator.fc_bias.bias": (32,),
    "fclayer.w1.weight": (128, 128),
    "fclayer.w1.bias": (128,),
    "fclayer.w2.weight": (128, 128),
    "fclayer.w2.bias": (128,),
}


def test_parameter_names_and_shapes_match_published_layout() -> None:
    embed = DofaPatchEmbed(patch_size=4, embed_dim=32)
    shapes = {k: tuple(v.shape) for k, v in embed.state_dict().items()}
    assert shapes == EXPECTED_SHAPES
    reference = DOFAEmbedding(128, kernel_size=4, embed_dim=32)
    assert shapes == {k: tuple(v.shape) for k, v in reference.state_dict().items()}


def test_matches_torchgeo_embedding_with_padding_1() -> None:
    reference = DOFAEmbedding(128, kernel_size=4, embed_dim=32).eval()
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    ours = DofaPatchEmbed(patch_size=4, embed_dim=32, padding=1).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    x = torch.randn(2, 5, 16, 16)
    waves = torch.tensor([0.49, 0.56, 0.665, 0.842, 1.61])
    with torch.no_grad():
        expected, _ = reference(x, waves)
        got = ours(x, waves)
    assert got.shape == expected.shape == (2, 16, 32)
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=1e-5)


def test_padding_changes_grid_and_values() -> None:
    clip = DofaPatchEmbed(patch_size=4, embed_dim=32, padding=0).eval()
    v1 = DofaPatchEmbed(patch_size=4, embed_dim=32, padding=1).eval()
    v1.load_state_dict(clip.state_dict())
    waves = torch.tensor([0.665, 0.56, 0.49])
    with torch.no_grad():
        # 14 px, k=4: padding 0 -> floor(14/4)=3 per side, padding 1 -> floor(16/4)=4.
        assert clip(torch.randn(1, 3, 14, 14), waves).shape == (1, 9, 32)
        assert v1(torch.randn(1, 3, 14, 14), waves).shape == (1, 16, 32)
        assert clip.grid_size(14, 14) == (3, 3) and v1.grid_size(14, 14) == (4, 4)
        # Same grid at 16 px, but the padded conv sees shifted windows.
        x = torch.randn(1, 3, 16, 16)
        a, b = clip(x, waves), v1(x, waves)
    assert a.shape == b.shape == (1, 16, 32)
    assert not torch.allclose(a, b)


def test_wavelength_code_is_sincos_of_nm() -> None:
    code = wavelength_code(torch.tensor([665.0]), 128)
    assert code.shape == (1, 128)
    torch.testing.assert_close(code[0, 0], torch.sin(torch.tensor(665.0)))
    torch.testing.assert_close(code[0, 64], torch.cos(torch.tensor(665.0)))


def test_kernel_follows_band_wavelengths() -> None:
    embed = DofaPatchEmbed(patch_size=4, embed_dim=32).eval()
    with torch.no_grad():
        w_rgb, b_rgb = embed.kernel(torch.tensor([0.665, 0.56, 0.49]))
        w_swapped, _ = embed.kernel(torch.tensor([0.49, 0.56, 0.665]))
    assert w_rgb.shape == (32, 3, 4, 4) and b_rgb.shape == (32,)
    # Each band's kernel slice depends on that band's wavelength, not on its position.
    torch.testing.assert_close(w_rgb[:, 0], w_swapped[:, 2], atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize(
    ("waves", "message"),
    [
        (torch.tensor([0.665, 0.56]), "got 3 bands"),
        (torch.tensor([0.665, float("nan"), 0.49]), "finite"),
        (torch.tensor([[0.665, 0.56, 0.49]]), "got 3 bands"),
    ],
)
def test_bad_wavelengths_are_named(waves: torch.Tensor, message: str) -> None:
    embed = DofaPatchEmbed(patch_size=4, embed_dim=32)
    with pytest.raises(ValueError, match=message):
        embed(torch.randn(1, 3, 16, 16), waves)


def test_the_kernel_is_reused_only_while_wavelengths_and_weights_are_unchanged() -> None:
    torch.manual_seed(0)
    embed = DofaPatchEmbed(patch_size=4, embed_dim=32).eval()
    calls = []
    embed.weight_generator.register_forward_hook(lambda *_: calls.append(1))
    x = torch.randn(1, 3, 16, 16)
    s2 = torch.tensor([0.665, 0.56, 0.49])
    with torch.no_grad():
        first = embed(x, s2)
        assert torch.equal(embed(x, s2.clone()), first) and len(calls) == 1  # reused
        other = embed(x, torch.tensor([0.842, 0.665, 0.56]))
        assert len(calls) == 2 and not torch.allclose(other, first)
        embed(x, s2)
        assert len(calls) == 3  # one band set kept: the last one
        # Weights changed in place (an optimiser step, load_state_dict): generated again.
        embed.weight_generator.fc_bias.bias.add_(1.0)
        changed = embed(x, s2)
        assert len(calls) == 4 and not torch.allclose(changed, first)
    fresh = DofaPatchEmbed(patch_size=4, embed_dim=32).eval()
    fresh.load_state_dict(embed.state_dict())
    with torch.no_grad():
        assert torch.equal(fresh(x, s2), changed)
        embed.load_state_dict(DofaPatchEmbed(patch_size=4, embed_dim=32).state_dict())
        assert len(calls) == 4 and not torch.allclose(embed(x, s2), changed)
        assert len(calls) == 5
    # With grad (training, fine-tuning the generator) every call generates, so gradients flow.
    out = embed(x, s2)
    assert len(calls) == 6 and out.requires_grad
    out.sum().backward()
    assert embed.weight_generator.fc_weight.weight.grad is not None
