"""The "hires" mask decoder: pixel-level masks for any band set, and the light decoder unchanged."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from skyeye.modeling.mask_decoders import get_mask_decoder, list_mask_decoders, mask_losses
from skyeye.modeling.mask_decoders.hires import HiResMaskHead, WavelengthNormDiff
from skyeye.modeling.mask_decoders.light import SkyEyeMaskHead
from skyeye.modeling.mask_decoders.spectral_indices import INDICES, SpectralIndexFeatures

D = 32
S2 = [0.443, 0.49, 0.56, 0.665, 0.705, 0.74, 0.783, 0.842, 0.865, 0.945, 1.375, 1.61, 2.19]


def tiny_config(hires_dim: int = 8, ratios: int = 0, indices: bool = False) -> SimpleNamespace:
    return SimpleNamespace(
        mask_hires_indices=indices,
        text_config=SimpleNamespace(hidden_size=48),
        vision_config=SimpleNamespace(hidden_size=D),
        mask_head_hidden_size=D,
        mask_head_layers=2,
        mask_hires_dim=hires_dim,
        mask_hires_ratios=ratios,
    )


def test_light_decoder_masks_unchanged():
    """Pinned outputs of the light decoder as shipped before the hires decoder existed: folders
    saved with it must keep giving the same masks."""
    torch.manual_seed(0)
    head = SkyEyeMaskHead(tiny_config()).eval()
    gen = torch.Generator().manual_seed(1)
    with torch.no_grad():
        out = head(
            torch.randn(2, 48, generator=gen),
            torch.randn(2, 16, D, generator=gen),
            (4, 4),
            (16, 16),
        )
    assert out.sum().item() == pytest.approx(7.792992, abs=1e-4)
    expected = torch.tensor([-0.017386, 0.050649, -0.003607, -0.050169])
    assert torch.allclose(out[0, 0, :4], expected, atol=1e-5)
    expected = torch.tensor([0.084223, 0.016223, -0.016811, 0.053537])
    assert torch.allclose(out[1, 7, 5:9], expected, atol=1e-5)
    assert int((out > 0).sum()) == 336


@pytest.mark.parametrize(
    ("ratios", "indices"),
    [(0, False), (4, False), (4, True)],
    ids=["no-ratios", "4-ratios", "4-ratios-indices"],
)
def test_registered_and_starts_as_the_light_decoder(ratios, indices):
    assert "hires" in list_mask_decoders()
    assert get_mask_decoder("hires") is HiResMaskHead
    torch.manual_seed(0)
    light = SkyEyeMaskHead(tiny_config()).eval()
    hires = HiResMaskHead(tiny_config(ratios=ratios, indices=indices)).eval()
    assert hasattr(hires, "band_ratios") == bool(ratios)  # 0: the layout saved before ratios
    assert hasattr(hires, "index_proj") == indices  # False: the layout saved before indices
    missing, unexpected = hires.load_state_dict(light.state_dict(), strict=False)
    assert not unexpected and missing  # only the new full-resolution layers are new
    seg, vis = torch.randn(2, 48), torch.randn(2, 16, D)
    pixels = torch.randn(2, 4, 37, 29)
    with torch.no_grad():
        fine = hires(seg, vis, (4, 4), None, pixels=pixels, wavelengths=torch.tensor(S2[:4]))
        coarse = light(seg, vis, (4, 4), (37, 29))
    assert fine.shape == (2, 37, 29)
    assert torch.allclose(fine, coarse, atol=1e-5)


@pytest.mark.parametrize(
    "waves",
    [S2[1:4], S2[1:4] + [0.842], S2, [5.405, 5.405]],
    ids=["rgb", "4-band", "13-band", "sar-vv-vh"],
)
def test_any_band_count_goes_through_the_same_weights(waves):
    torch.manual_seed(0)
    head = HiResMaskHead(tiny_config(ratios=3, indices=True))
    torch.nn.init.normal_(head.hires_hyper[2].weight)  # as after training (it starts at zero)
    nn_weights = sum(p.numel() for p in head.parameters())
    pixels = [torch.randn(len(waves), 20, 28)]
    out = head(
        torch.randn(1, 48), torch.randn(1, 16, D), (4, 4), None, pixels, [torch.tensor(waves)]
    )
    assert out.shape == (1, 20, 28)
    mask_losses(out, torch.zeros_like(out))["bce"].backward()
    assert head.band_conv.generator[0].weight.grad.abs().sum() > 0
    assert head.band_ratios.generator[0].weight.grad.abs().sum() > 0
    # SAR has no optical index (all inputs 0): only the projection's bias learns there.
    assert head.index_proj.bias.grad.abs().sum() > 0
    assert (head.index_proj.weight.grad.abs().sum() > 0) == (waves[0] < 1.0)
    assert sum(p.numel() for p in head.parameters()) == nn_weights


def test_band_ratios_are_normalised_differences_free_of_brightness():
    """Each ratio is (a - b) / (a + b) of two band mixes of the pixels + 1 (scaled values):
    in [-1, 1], and the same when every band of a pixel is k times brighter (shade, sun angle),
    as NDWI is."""
    torch.manual_seed(0)
    ratios = WavelengthNormDiff(5)
    waves = torch.tensor(S2)
    scaled = torch.rand(2, 13, 9, 11) * 1.5 + 0.05  # pixels + 1 of the processor: 0..2
    brighter = scaled * torch.rand(2, 1, 9, 11).mul(3).add(0.5)  # per pixel, every band alike
    with torch.no_grad():
        out = ratios(scaled - 1, waves)
        again = ratios(brighter - 1, waves)
    assert out.shape == (2, 5, 9, 11)
    assert out.abs().max() <= 1 and out.std() > 0.01  # distinct, not all 0
    assert torch.allclose(out, again, atol=1e-5)
    # Two bands (green, NIR): every ratio is zero exactly where NDWI is, and has its sign or
    # the opposite one everywhere (the mixes differ only in how they weigh the two bands).
    two = torch.stack([scaled[:, 2], scaled[:, 7]], 1)
    two[0, :, 0, 0] = 0.4  # green = NIR
    with torch.no_grad():
        nd = ratios(two - 1, waves[[2, 7]])
    ndwi = (two[:, 0] - two[:, 1]) / (two[:, 0] + two[:, 1])
    assert nd[0, :, 0, 0].abs().max() < 1e-6
    agree = (torch.sign(nd) * torch.sign(ndwi)[:, None])[1].flatten(1)  # (ratios, pixels)
    assert (agree == agree[:, :1]).all() and (agree != 0).all()


@pytest.mark.parametrize(
    ("waves", "order"),
    [(S2, list(range(13))), ([0.49, 0.56, 0.665, 0.83], [3, 1, 0, 2]), (S2[1:4], [0, 1, 2])],
    ids=["sentinel-2", "naip-shuffled", "rgb"],
)
def test_spectral_indices_are_the_analysts_indices_for_any_band_set(waves, order):
    """NDWI, MNDWI, NDVI, NDBI from the bands the label rules pick (S2's NIR is B08, not B8A),
    whatever the band order; missing bands give 0 and an availability channel of 0."""
    torch.manual_seed(0)
    refl = torch.rand(2, len(waves), 6, 7) * 0.6 + 0.01  # scaled values (0..1)
    pixels = (refl * 2 - 1)[:, order]  # the processor's normalisation, bands shuffled
    waves_t = torch.tensor(waves)[order]
    out = SpectralIndexFeatures()(pixels, waves_t)
    assert out.shape == (2, SpectralIndexFeatures.n_out, 6, 7)
    n = len(INDICES)
    names = list(INDICES)

    def nd(a: int, b: int) -> torch.Tensor:
        return (refl[:, a] - refl[:, b]) / (refl[:, a] + refl[:, b])

    if len(waves) == 13:
        expected = {"ndwi": nd(2, 7), "mndwi": nd(2, 11), "ndvi": nd(7, 3), "ndbi": nd(11, 7)}
    elif len(waves) == 4:
        expected = {"ndwi": nd(1, 3), "ndvi": nd(3, 2)}
    else:
        expected = {}
    for i, name in enumerate(names):
        if name in expected:
            assert torch.allclose(out[:, i], expected[name], atol=1e-5), name
            sign = torch.tanh(10 * expected[name])
            assert torch.allclose(out[:, n + 1 + i], sign, atol=1e-5), name
            assert (out[:, 2 * n + 1 + i] == 1).all()
        else:
            assert (out[:, i] == 0).all() and (out[:, 2 * n + 1 + i] == 0).all(), name
    visible = [waves.index(w) for w in waves if 0.45 <= w <= 0.69 and w != 0.443]
    assert torch.allclose(out[:, n], refl[:, visible].mean(1), atol=1e-5)


def test_spectral_indices_of_sar_are_absent():
    out = SpectralIndexFeatures()(torch.randn(1, 2, 5, 5), torch.tensor([5.405, 5.405]))
    assert (out == 0).all()


def test_masks_of_images_with_different_bands_and_grids_in_one_call():
    head = HiResMaskHead(tiny_config())
    pixels = [torch.randn(13, 16, 16), torch.randn(2, 24, 24), torch.randn(13, 16, 16)]
    waves = [torch.tensor(S2), torch.tensor([5.405, 5.405]), torch.tensor(S2)]
    out = head(torch.randn(3, 48), torch.randn(3, 16, D), (4, 4), (24, 24), pixels, waves)
    assert out.shape == (3, 24, 24)
    with pytest.raises(ValueError, match="different grids"):
        head(torch.randn(3, 48), torch.randn(3, 16, D), (4, 4), None, pixels, waves)
    with pytest.raises(ValueError, match="needs each mask's full-resolution pixels"):
        head(torch.randn(3, 48), torch.randn(3, 16, D), (4, 4), (24, 24))
    with pytest.raises(ValueError, match="one wavelength"):
        head(torch.randn(1, 48), torch.randn(1, 16, D), (4, 4), None, [pixels[0]], [waves[1]])


def _line_batch(gen: torch.Generator, n: int, side: int = 24):
    """4-band images of noise with one one-pixel-wide line (row or column) that is dark in the
    two longer bands (water-like); the target is exactly that line."""
    pixels = torch.randn(n, 4, side, side, generator=gen) * 0.3
    targets = torch.zeros(n, side, side)
    for i in range(n):
        pos = int(torch.randint(2, side - 2, (1,), generator=gen))
        if torch.rand(1, generator=gen) < 0.5:
            targets[i, pos, :] = 1
        else:
            targets[i, :, pos] = 1
    pixels[:, 2:] -= 2.0 * targets[:, None]
    return pixels, targets


def _line_iou(logits: torch.Tensor, targets: torch.Tensor) -> float:
    pred, tgt = logits > 0, targets > 0.5
    return ((pred & tgt).sum() / (pred | tgt).sum().clamp(min=1)).item()


def _train_on_lines(head: HiResMaskHead, steps: int) -> float:
    gen = torch.Generator().manual_seed(0)
    waves = torch.tensor([0.49, 0.56, 0.842, 1.61])
    seg = torch.randn(1, 48, generator=gen)
    # The tower sees only a coarse 4x4 grid (6-px patches): nothing there places a 1-px line.
    vis = torch.randn(1, 16, D, generator=gen)
    opt = torch.optim.Adam(head.parameters(), lr=1e-2)

    def run(pixels):
        k = pixels.shape[0]
        return head(seg.expand(k, -1), vis.expand(k, -1, -1), (4, 4), None, pixels, waves)

    for _ in range(steps):
        pixels, targets = _line_batch(gen, 8)
        terms = mask_losses(run(pixels), targets)
        loss = 2.0 * terms["bce"] + 0.5 * terms["dice"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    pixels, targets = _line_batch(torch.Generator().manual_seed(99), 16)
    with torch.no_grad():
        return _line_iou(run(pixels), targets)


def test_tiny_trained_decoder_recovers_a_one_pixel_line():
    """Fails if the decoder's masks are coarser than the read grid: the tower sees 6-px patches,
    so a mask drawn on the patch grid (even x4) cannot cover a 1-px line without covering at
    least as many pixels next to it (IoU <= 0.5)."""
    torch.manual_seed(0)
    iou = _train_on_lines(HiResMaskHead(tiny_config()), steps=30)
    print(f"one-pixel line IoU: hires {iou:.3f}")
    assert iou > 0.8
