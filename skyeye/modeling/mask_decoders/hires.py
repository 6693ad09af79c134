"""The "hires" mask decoder: the light decoder's coarse mask, refined on the image's own pixels.

The light decoder (``SkyEyeMaskHead``) decodes a ``[SEG]`` on the tower's patch grid (x4), so
every edge is a staircase of ``patch_size / 4`` pixels. Here, as in U-Net skips and SAM / LISA's
high-resolution features, a few cheap convolutions run on the input bands at the grid the image
was read at, and the ``[SEG]`` query picks pixels there:

1. **Any band set, one set of weights.** Each band's central wavelength gets DOFA's sin-cos code
   (``wavelength_code``); a small MLP turns it into that band's column of a 1x1 conv (and a bias
   share). RGB, 4-13-band optical and SAR all go through the same generator, as in the tower's
   patch embedding (``skyeye/modeling/vision/patch_embed.py``), but with a 1x1 kernel.
   With ``mask_hires_ratios`` > 0, normalised differences of wavelength-picked band mixes are
   added (``WavelengthNormDiff``): NDWI, MNDWI and NDVI are such ratios, and a ratio does not
   shrink with the band count or the scene's brightness, as the 1x1 conv's band average does
   (water's green-NIR contrast is ~0.2 of the normalised range, averaged over 13 bands: 0.015).
   With ``mask_hires_indices``, the indices themselves (NDWI, MNDWI, NDVI, NDBI, their soft
   signs, brightness) are added, their bands picked by role as the label rules pick them
   (``SpectralIndexFeatures``): the rules split the indices at 0, and the signs do not move
   with the season as the magnitudes do (on a February scene the decoder with learned mixes
   alone drew a fraction of the water, docs/skyeye_tiny.md).
2. **Context from the tokens.** The light decoder's upscaled token features are projected and
   resized onto the pixel grid and added, so the full-resolution convolutions know what is
   around each pixel (lake vs dark field).
3. **Pixel picking.** The decoded ``[SEG]`` query is mapped to a per-pixel classifier, dotted with
   the refined pixel features, and added to the coarse logits resized to the pixel grid.

The classifier's last layer starts at zero, so a fresh "hires" head loaded with a light head's
weights (``strict=False``) gives exactly the light head's masks (bilinearly resized) until trained.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skyeye.modeling.mask_decoders.light import SkyEyeMaskHead
from skyeye.modeling.mask_decoders.spectral_indices import SpectralIndexFeatures
from skyeye.modeling.vision.patch_embed import wavelength_code

logger = logging.getLogger(__name__)

__all__ = ["HiResMaskHead", "WavelengthConv1x1", "WavelengthNormDiff"]

#: Width of the wavelength code fed to the band-weight generator.
WAVE_DIM = 64


class _BandWeightGenerator(nn.Module):
    """An MLP from each band's wavelength code to ``2 * out_dim`` numbers for that band: the
    per-band weights of `WavelengthConv1x1` and `WavelengthNormDiff` (any band set, one MLP)."""

    def __init__(self, out_dim: int, wave_dim: int = WAVE_DIM) -> None:
        super().__init__()
        self.out_dim, self.wave_dim = out_dim, wave_dim
        self.generator = nn.Sequential(
            nn.Linear(wave_dim, wave_dim), nn.GELU(), nn.Linear(wave_dim, 2 * out_dim)
        )

    def generate(self, pixels: Tensor, wavelengths: Tensor) -> Tensor:
        """(B, C, H, W) pixels, (C,) wavelengths in µm -> (C, 2 * out_dim) in the weights' dtype."""
        if pixels.ndim != 4 or wavelengths.ndim != 1 or wavelengths.shape[0] != pixels.shape[1]:
            raise ValueError(
                f"pixels (B, C, H, W) need one wavelength (µm) per band; got pixels "
                f"{tuple(pixels.shape)} and wavelengths {tuple(wavelengths.shape)}"
            )
        first = self.generator[0]
        assert isinstance(first, nn.Linear)
        code = wavelength_code(wavelengths.to(pixels.device) * 1000.0, self.wave_dim)
        return self.generator(code.to(first.weight.dtype))


class WavelengthConv1x1(_BandWeightGenerator):
    """A 1x1 conv whose weights are generated from the bands' wavelengths.

    ``(B, C, H, W)`` pixels with ``(C,)`` wavelengths in µm -> ``(B, F, H, W)``. The band outputs
    are averaged over bands (not summed), so the feature scale does not grow with the band count.
    """

    def forward(self, pixels: Tensor, wavelengths: Tensor) -> Tensor:
        gen = self.generate(pixels, wavelengths)  # (C, 2F)
        weight = gen[:, : self.out_dim].t()  # (F, C)
        bias = gen[:, self.out_dim :].mean(0)  # (F,)
        n_bands = pixels.shape[1]
        return (
            torch.einsum("fc,bchw->bfhw", weight.to(pixels.dtype), pixels) / n_bands
            + bias.to(pixels.dtype)[None, :, None, None]
        )


class WavelengthNormDiff(_BandWeightGenerator):
    """Normalised differences of two band mixes each, the mixes picked by the bands' wavelengths.

    ``(B, C, H, W)`` normalised pixels with ``(C,)`` wavelengths in µm -> ``(B, R, H, W)`` in
    [-1, 1]: for each of the R outputs, softmax weights over the bands (generated from their
    wavelengths, so any band set goes through the same weights) give two mixes a and b of
    ``u = pixels + 1``, and the output is (a - b) / (a + b). With the processor's mean = std = 0.5,
    u is the scaled value (reflectance / ``reflectance_max``, dB on the SAR range) times 2, so a
    mix that picks green against NIR is NDWI exactly; the ratio is unchanged when every band is
    scaled alike. Nodata pixels (0 after normalisation) give 0 where a and b weigh them alike.
    """

    #: Softmax temperature at the generator's output: random mixes start peaked on a few bands
    #: (distinct ratios), not uniform (every ratio 0, with vanishing gradients).
    SHARPNESS = 4.0

    def forward(self, pixels: Tensor, wavelengths: Tensor) -> Tensor:
        logits = self.generate(pixels, wavelengths).float() * self.SHARPNESS  # (C, 2R)
        mixes = torch.einsum(
            "cr,bchw->brhw", logits.softmax(0), (pixels.float() + 1.0).clamp_min(0.0)
        )
        a, b = mixes[:, : self.out_dim], mixes[:, self.out_dim :]
        return (a - b) / (a + b).clamp_min(1e-3)


class HiResMaskHead(SkyEyeMaskHead):
    """Mask decoder with a full-resolution path ("hires" in ``MASK_DECODERS``).

    Reads from ``config`` what ``SkyEyeMaskHead`` reads, plus ``mask_hires_dim`` (width of the
    full-resolution features, default 8: at 512 x 512 every channel costs, ReLU too) and
    ``mask_hires_ratios`` (band-ratio features, default 0 = none: the layout of folders saved
    before they existed) and ``mask_hires_indices`` (spectral-index features, default False).
    ``forward`` takes the image pixels of each mask (the processor's ``pixel_values_hires``) and
    returns logits on their grid.
    """

    #: The model passes each mask's full-resolution pixels and wavelengths (see `forward`).
    needs_pixels = True

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        fdim = int(getattr(config, "mask_hires_dim", 8) or 8)
        if fdim < 4:
            raise ValueError(f"mask_hires_dim must be at least 4, got {fdim}")
        self.hires_dim = fdim
        self.band_conv = WavelengthConv1x1(fdim)
        ratios = int(getattr(config, "mask_hires_ratios", 0) or 0)
        if ratios < 0:
            raise ValueError(f"mask_hires_ratios must be 0 (none) or positive, got {ratios}")
        self.hires_ratios = ratios
        if ratios:
            self.band_ratios = WavelengthNormDiff(ratios)
            self.ratio_proj = nn.Conv2d(ratios, fdim, kernel_size=1)
        self.hires_indices = bool(getattr(config, "mask_hires_indices", False))
        if self.hires_indices:
            self.spectral = SpectralIndexFeatures()
            self.index_proj = nn.Conv2d(SpectralIndexFeatures.n_out, fdim, kernel_size=1)
            # The query also reads the indices linearly (a skip past the ReLUs): "NDWI > 0 and
            # dark" is then one weighted sum, not something to rebuild in the 8 mixed channels.
            self.index_hyper = nn.Linear(self.dim, SpectralIndexFeatures.n_out)
        self.context_proj = nn.Conv2d(self.dim // 8, fdim, kernel_size=1)
        # Two 3x3 convs (a residual block) at full resolution, then a 1x1 to the pixel features.
        self.refine = nn.Sequential(
            nn.Conv2d(fdim, fdim, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(fdim, fdim, 3, padding=1),
        )
        self.pixel_proj = nn.Conv2d(fdim, fdim, kernel_size=1)
        self.hires_hyper = nn.Sequential(
            nn.Linear(self.dim, self.dim), nn.ReLU(), nn.Linear(self.dim, fdim)
        )
        # Zero classifier: untrained, the head gives the coarse (light) masks.
        classifier = self.hires_hyper[2]
        assert isinstance(classifier, nn.Linear)
        nn.init.zeros_(classifier.weight)
        nn.init.zeros_(classifier.bias)
        if self.hires_indices:
            nn.init.zeros_(self.index_hyper.weight)
            nn.init.zeros_(self.index_hyper.bias)

    def forward(
        self,
        seg_hidden: Tensor,
        vision_features: Tensor,
        grid: tuple[int, int],
        output_size: tuple[int, int] | None = None,
        pixels: Tensor | Sequence[Tensor] | None = None,
        wavelengths: Tensor | Sequence[Tensor] | None = None,
    ) -> Tensor:
        """Mask logits on the pixel grid.

        Args:
            seg_hidden: (K, D_text) the LLM's last hidden state at each ``[SEG]``.
            vision_features: (K, N, D_vis) the tower's patch tokens of each mask's image.
            grid: (h, w) patch grid with h * w == N.
            output_size: (H, W) of the returned logits; None = the pixels' grid (all masks'
                pixels must then share one grid). Masks whose pixels are on another grid are
                resized to it bilinearly.
            pixels: per mask, the normalised image (C_k, H_k, W_k) at full resolution (a list, or
                a (K, C, H, W) tensor). Required: this decoder refines on pixels.
            wavelengths: per mask (C_k,) in µm (a list), or one (C,) shared by all.

        Returns:
            (K, H, W) logits.
        """
        k = seg_hidden.shape[0]
        if pixels is None or wavelengths is None:
            raise ValueError(
                "the hires mask decoder needs each mask's full-resolution pixels and wavelengths "
                "(pixel_values_hires from a processor with image_processor.hires_size set)"
            )
        pix = list(pixels) if not isinstance(pixels, Tensor) or pixels.ndim == 4 else [pixels]
        if isinstance(wavelengths, Tensor) and wavelengths.ndim == 1:
            waves = [wavelengths] * len(pix)
        else:
            waves = list(wavelengths)
        if len(pix) != k or len(waves) != k:
            raise ValueError(
                f"{k} [SEG] state(s) but {len(pix)} pixel tensor(s) and {len(waves)} wavelength "
                "vector(s); give one image per [SEG]"
            )
        if output_size is None:
            grids = {tuple(p.shape[-2:]) for p in pix}
            if len(grids) > 1:
                raise ValueError(
                    f"the masks' images have different grids {sorted(grids)}; pass output_size"
                )
            output_size = grids.pop() if grids else (1, 1)
        size = (int(output_size[0]), int(output_size[1]))
        query, kernel, feat = self.decode_coarse(seg_hidden, vision_features, grid)
        coarse = torch.einsum("kc,kchw->khw", kernel, feat)[:, None]  # (K, 1, 4h, 4w)
        hyper = self.hires_hyper(query)  # (K, F)
        if self.hires_indices:  # (K, F + n_indices): the last columns read the indices
            hyper = torch.cat([hyper, self.index_hyper(query)], 1)
        context = self.context_proj(feat)  # (K, F, 4h, 4w)
        # The full-resolution path always runs in float32: its weights are tiny, and bfloat16
        # convolutions on CPU were ~16x slower than float32 at 512 x 512 (bench/mask_decoder.py).
        out = coarse.new_empty((k, *size), dtype=torch.float32)
        # Masks whose images share bands and grid run as one batch.
        groups: dict[tuple, list[int]] = {}
        for i, (p, w) in enumerate(zip(pix, waves, strict=True)):
            if p.ndim != 3 or w.ndim != 1 or w.shape[0] != p.shape[0]:
                raise ValueError(
                    f"mask {i}: pixels must be (C, H, W) with one wavelength per band; got "
                    f"{tuple(p.shape)} and {tuple(w.shape)}"
                )
            key = (tuple(p.shape), tuple(round(float(x), 6) for x in w))
            groups.setdefault(key, []).append(i)
        # Without gradients, one mask at a time: a batch's full-resolution features (B x F x H x W
        # float32, several alive per layer) were a whole scene's peak memory; per mask, the
        # logits are the same bits.
        chunk = k if torch.is_grad_enabled() else 1
        for (shape, _), members in groups.items():
            grid_hw = tuple(shape[-2:])
            for start in range(0, len(members), chunk):
                index = members[start : start + chunk]
                idx = torch.as_tensor(index, device=coarse.device)
                batch = torch.stack([pix[i] for i in index]).to(
                    device=coarse.device, dtype=torch.float32
                )
                logits = self._refine(
                    batch, waves[members[0]], coarse[idx], context[idx], hyper[idx], grid_hw
                )
                if grid_hw != size:
                    logits = F.interpolate(
                        logits[:, None], size=size, mode="bilinear", align_corners=False
                    )[:, 0]
                out[idx] = logits
        return out

    def _refine(
        self,
        pixels: Tensor,
        wavelengths: Tensor,
        coarse: Tensor,
        context: Tensor,
        hyper: Tensor,
        size: tuple[int, int],
    ) -> Tensor:
        """pixels (B, C, H, W) float32 -> logits (B, H, W) float32: coarse logits + query . pixel
        features."""

        def up(t: Tensor) -> Tensor:
            return F.interpolate(t.float(), size=size, mode="bilinear", align_corners=False)

        x = self.band_conv(pixels, wavelengths) + up(context)
        if self.hires_ratios:
            x = x + _conv(self.band_ratios(pixels, wavelengths), self.ratio_proj)
        indices = None
        if self.hires_indices:
            indices = self.spectral(pixels, wavelengths)
            x = x + _conv(indices, self.index_proj)
        return up(coarse)[:, 0] + self._pick(x, indices, hyper)

    def _pick(self, x: Tensor, indices: Tensor | None, hyper: Tensor) -> Tensor:
        """The refinement and pixel picking shared with the change decoder: features x
        (B, F, H, W) before activation, the index channels (B, n_indices, H, W) or None, the
        query's per-pixel classifier hyper (B, F [+ n_indices]) -> fine logits (B, H, W)."""
        x = F.relu(x)
        first, second = self.refine[0], self.refine[2]
        assert isinstance(first, nn.Conv2d) and isinstance(second, nn.Conv2d)
        x = x + _conv(F.relu(_conv(x, first)), second)
        feat = _conv(F.relu(x), self.pixel_proj)  # (B, F, H, W)
        if indices is not None:
            feat = torch.cat([feat, indices], 1)  # (B, F + n_indices, H, W)
        return torch.einsum("bf,bfhw->bhw", hyper.float(), feat)


def _conv(x: Tensor, conv: nn.Conv2d) -> Tensor:
    """``conv`` applied in float32 whatever dtype its weights are stored in."""
    bias = None if conv.bias is None else conv.bias.float()
    return F.conv2d(x, conv.weight.float(), bias, padding=conv.padding)
