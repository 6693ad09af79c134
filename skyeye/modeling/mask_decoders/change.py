"""The "change" decoder: a change ``[SEG]`` -> a change mask between two dates of one place.

Siamese, in the family of BIT (Chen et al. 2021), ChangeFormer (Bandara & Patel 2022) and STAR
(Zheng et al. 2021): both dates went through the same tower and projector (the model encodes
every image alike), and this decoder reads the two dates' patch tokens together with their
difference, at the "hires" decoder's full resolution:

1. **Tokens.** Each date's patch tokens are projected by the same ``vision_proj``; the pair's
   tokens are ``pair_fuse([f1, f2, |f1 - f2|])`` (concatenation and absolute difference, as BIT
   and ChangeFormer fuse their Siamese features). The ``[SEG]`` query decodes them with the light
   decoder's two-way transformer and x4 upscaling (`SkyEyeMaskHead.decode_tokens`): the coarse
   change logits and the context features.
2. **Pixels.** The "hires" refinement (`HiResMaskHead`) runs on the *difference* of the two
   dates' pixels: the wavelength-conditioned 1x1 conv of each date (each with its own bands, so
   a Sentinel-2 date and a Landsat date compare) subtracted, its magnitude, the band-ratio
   features' difference and, with ``mask_hires_indices``, the spectral indices' difference
   (dNDWI, dMNDWI, dNDVI, dNDBI, the brightness and the soft signs' difference: "water gained" is
   dNDWI > 0 where the sign flips) and its magnitude. Both dates must be on one grid
   (`skyeye.io.align.align_to_first` puts them there).
3. **Pixel picking** as in "hires": the decoded query's per-pixel classifier dotted with the
   refined difference features, added to the coarse logits resized to the pixel grid.

Built from the same config fields as "hires" (``mask_head_hidden_size``, ``mask_hires_dim``,
``mask_hires_ratios``, ``mask_hires_indices``), so every weight a "hires" head has is here under
the same name and a change head starts from the trained mask head's weights (``strict=False``;
new: ``pair_fuse``, ``diff_abs_proj``, ``index_abs_proj``). The model holds it as
``change_head`` when ``config.mask_change`` is set.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from skyeye.modeling.mask_decoders.hires import HiResMaskHead, _conv
from skyeye.modeling.mask_decoders.spectral_indices import INDICES, SpectralIndexFeatures

logger = logging.getLogger(__name__)

__all__ = ["ChangeMaskHead"]

#: SpectralIndexFeatures' value channels (the indices, the visible mean, the soft signs) that
#: differ between dates; the channels after them are the bands' availability.
N_INDEX_VALUES = 2 * len(INDICES) + 1


class ChangeMaskHead(HiResMaskHead):
    """Change mask decoder over two dates ("change" in ``CHANGE_DECODERS``).

    ``forward(seg_hidden (K, D_text), vision_before (K, N, D_vis), vision_after (K, N, D_vis),
    grid, output_size, pixels_before, pixels_after, wavelengths_before, wavelengths_after)``
    -> (K, H, W) change logits on the pixel grid both dates share.
    """

    needs_pixels = True
    #: The model passes this decoder two dates per [SEG] (see `forward`).
    decodes_pairs = True

    def __init__(self, config: Any) -> None:
        super().__init__(config)
        dim, fdim = self.dim, self.hires_dim
        self.pair_fuse = nn.Sequential(nn.Linear(3 * dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.diff_abs_proj = nn.Conv2d(fdim, fdim, kernel_size=1)
        if self.hires_indices:
            self.index_abs_proj = nn.Conv2d(N_INDEX_VALUES, fdim, kernel_size=1)

    def fuse_tokens(self, vision_before: Tensor, vision_after: Tensor) -> Tensor:
        """(K, N, D_vis) twice -> (K, N, C): both dates projected alike, fused with |f1 - f2|."""
        if vision_before.shape != vision_after.shape:
            raise ValueError(
                f"the two dates' patch tokens differ in shape: {tuple(vision_before.shape)} and "
                f"{tuple(vision_after.shape)}; encode both dates with the same tower"
            )
        dtype = cast(Tensor, self.vision_proj[1].weight).dtype
        f1 = self.vision_proj(vision_before.to(dtype))
        f2 = self.vision_proj(vision_after.to(dtype))
        return cast(Tensor, self.pair_fuse(torch.cat([f1, f2, (f1 - f2).abs()], dim=-1)))

    def forward(  # type: ignore[override]
        self,
        seg_hidden: Tensor,
        vision_before: Tensor,
        vision_after: Tensor,
        grid: tuple[int, int],
        output_size: tuple[int, int] | None = None,
        pixels_before: Sequence[Tensor] | None = None,
        pixels_after: Sequence[Tensor] | None = None,
        wavelengths_before: Sequence[Tensor] | None = None,
        wavelengths_after: Sequence[Tensor] | None = None,
    ) -> Tensor:
        """Change logits on the pixel grid.

        Args:
            seg_hidden: (K, D_text) the LLM's last hidden state at each change ``[SEG]``.
            vision_before / vision_after: (K, N, D_vis) each pair's patch tokens, per date.
            grid: (h, w) patch grid with h * w == N.
            output_size: (H, W) of the returned logits; None = the pixels' grid (all pairs on one).
            pixels_before / pixels_after: per pair, (C, H, W) normalised pixels of each date at
                full resolution, both dates on one (H, W) grid (their bands may differ).
            wavelengths_before / wavelengths_after: per pair, (C,) µm of each date's bands.

        Returns:
            (K, H, W) float32 logits.
        """
        k = seg_hidden.shape[0]
        self._check_inputs(seg_hidden, vision_after, grid)
        sides = (pixels_before, pixels_after, wavelengths_before, wavelengths_after)
        if any(s is None for s in sides):
            raise ValueError(
                "the change decoder needs both dates' full-resolution pixels and wavelengths "
                "(pixel_values_hires from a processor with image_processor.hires_size set)"
            )
        p1, p2, w1, w2 = (list(cast(Sequence[Tensor], s)) for s in sides)
        if not len(p1) == len(p2) == len(w1) == len(w2) == k:
            raise ValueError(
                f"{k} change [SEG] state(s) but {len(p1)}/{len(p2)} pixel tensors and "
                f"{len(w1)}/{len(w2)} wavelength vectors; give both dates per [SEG]"
            )
        groups: dict[tuple, list[int]] = {}
        for i in range(k):
            for p, w in ((p1[i], w1[i]), (p2[i], w2[i])):
                if p.ndim != 3 or w.ndim != 1 or w.shape[0] != p.shape[0]:
                    raise ValueError(
                        f"pair {i}: pixels must be (C, H, W) with one wavelength per band; got "
                        f"{tuple(p.shape)} and {tuple(w.shape)}"
                    )
            if p1[i].shape[-2:] != p2[i].shape[-2:]:
                raise ValueError(
                    f"pair {i}: the dates are on different grids {tuple(p1[i].shape[-2:])} and "
                    f"{tuple(p2[i].shape[-2:])}; align them first (skyeye.io.align.align_to_first)"
                )
            key = tuple(
                (tuple(p.shape), tuple(round(float(x), 6) for x in w))
                for p, w in ((p1[i], w1[i]), (p2[i], w2[i]))
            )
            groups.setdefault(key, []).append(i)
        if output_size is None:
            grids = {(int(p.shape[-2]), int(p.shape[-1])) for p in p2}
            if len(grids) > 1:
                raise ValueError(
                    f"the pairs have different grids {sorted(grids)}; pass output_size"
                )
            output_size = grids.pop() if grids else (1, 1)
        size = (int(output_size[0]), int(output_size[1]))
        fused = self.fuse_tokens(vision_before, vision_after)
        query, kernel, feat = self.decode_tokens(seg_hidden, fused, grid)
        coarse = torch.einsum("kc,kchw->khw", kernel, feat)[:, None]  # (K, 1, 4h, 4w)
        hyper = self.hires_hyper(query)  # (K, F)
        if self.hires_indices:
            hyper = torch.cat([hyper, self.index_hyper(query)], 1)
        context = self.context_proj(feat)
        out = coarse.new_empty((k, *size), dtype=torch.float32)
        chunk = k if torch.is_grad_enabled() else 1
        for members in groups.values():
            grid_hw = (int(p2[members[0]].shape[-2]), int(p2[members[0]].shape[-1]))
            for start in range(0, len(members), chunk):
                index = members[start : start + chunk]
                idx = torch.as_tensor(index, device=coarse.device)

                def stack(ps: list[Tensor], index: list[int] = index) -> Tensor:
                    batch = torch.stack([ps[i] for i in index])
                    return batch.to(device=coarse.device, dtype=torch.float32)

                logits = self._refine_pair(
                    (stack(p1), w1[index[0]]),
                    (stack(p2), w2[index[0]]),
                    coarse[idx],
                    context[idx],
                    hyper[idx],
                    grid_hw,
                )
                if grid_hw != size:
                    logits = F.interpolate(
                        logits[:, None], size=size, mode="bilinear", align_corners=False
                    )[:, 0]
                out[idx] = logits
        return out

    def _refine_pair(
        self,
        before: tuple[Tensor, Tensor],
        after: tuple[Tensor, Tensor],
        coarse: Tensor,
        context: Tensor,
        hyper: Tensor,
        size: tuple[int, int],
    ) -> Tensor:
        """(pixels (B, C, H, W), wavelengths (C,)) per date -> logits (B, H, W) float32: coarse
        change logits + query . features of the dates' difference."""

        def up(t: Tensor) -> Tensor:
            return F.interpolate(t.float(), size=size, mode="bilinear", align_corners=False)

        (p1, w1), (p2, w2) = before, after
        diff = self.band_conv(p2, w2) - self.band_conv(p1, w1)  # (B, F, H, W)
        x = diff + _conv(diff.abs(), self.diff_abs_proj) + up(context)
        if self.hires_ratios:
            ratios = self.band_ratios(p2, w2) - self.band_ratios(p1, w1)
            x = x + _conv(ratios, self.ratio_proj)
        indices = None
        if self.hires_indices:
            i1, i2 = self.spectral(p1, w1), self.spectral(p2, w2)
            delta = i2[:, :N_INDEX_VALUES] - i1[:, :N_INDEX_VALUES]
            # Same channel layout as the "hires" features: differences, then availability (an
            # index counts only where both dates have its bands).
            indices = torch.cat([delta, i1[:, N_INDEX_VALUES:] * i2[:, N_INDEX_VALUES:]], 1)
            assert indices.shape[1] == SpectralIndexFeatures.n_out
            x = x + _conv(indices, self.index_proj) + _conv(delta.abs(), self.index_abs_proj)
        return up(coarse)[:, 0] + self._pick(x, indices, hyper)
