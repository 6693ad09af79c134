"""Spectral-index features for the "hires" mask decoder: NDWI, MNDWI, NDVI, NDBI, their soft
signs and the visible brightness.

The bands are picked as the label rules and baselines pick them (``skyeye.io.band_roles``: the
band nearest each role's centre wavelength), so the decoder sees the very indices a remote-sensing
analyst would threshold, for any sensor that has the bands; the learned band mixes of
``WavelengthNormDiff`` are instead renormalised over whatever bands an image has. An index whose
bands are missing (RGB has no NIR, SAR has no optical band) is 0 and its availability channel
says so, so one set of weights serves every band set.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from skyeye.io.band_roles import role_band_index

__all__ = ["INDICES", "SpectralIndexFeatures"]

#: Normalised differences (a - b) / (a + b), each named by its band roles.
INDICES: dict[str, tuple[str, str]] = {
    "ndwi": ("green", "nir"),  # McFeeters 1996: open water > 0
    "mndwi": ("green", "swir1"),  # Xu 2006: water against built-up and shadow
    "ndvi": ("nir", "red"),  # vegetation
    "ndbi": ("swir1", "nir"),  # built-up and bare soil
}
VISIBLE = ("blue", "green", "red")


class SpectralIndexFeatures(nn.Module):
    """(B, C, H, W) normalised pixels + (C,) wavelengths (µm) -> (B, 3 * len(INDICES) + 2, H, W).

    Channels: each index in [-1, 1] (0 where its bands are missing), then the mean visible value
    (the processor's scaled value in [0, 1]: reflectance / ``reflectance_max`` for optical
    products), then each index's soft sign ``tanh(10 * index)``, then one availability channel
    (1 or 0, constant over the image) per index and one for the visible mean. The soft signs are
    there because the rules split at 0 while the magnitudes move with season and sensor: water's
    NDWI has a median of 0.5-0.6 in the summer training scenes and 0.22 in the held-out February
    Berlin scene, where a decoder that learned the raw index drew a fraction of the water. The
    processor normalises with mean = std = 0.5, so ``pixels + 1`` is twice the scaled value and
    its normalised differences are the indices exactly. No weights.
    """

    n_out = 3 * len(INDICES) + 2
    #: Slope of the soft sign channels: tanh(10 x) is +-0.76 at x = +-0.1 and saturates beyond.
    SIGN_SLOPE = 10.0

    def forward(self, pixels: Tensor, wavelengths: Tensor) -> Tensor:
        if pixels.ndim != 4 or wavelengths.ndim != 1 or wavelengths.shape[0] != pixels.shape[1]:
            raise ValueError(
                f"pixels (B, C, H, W) need one wavelength (µm) per band; got pixels "
                f"{tuple(pixels.shape)} and wavelengths {tuple(wavelengths.shape)}"
            )
        waves = [float(w) for w in wavelengths]
        u = (pixels.float() + 1.0).clamp_min(0.0)  # twice the scaled value, >= 0
        b, _, h, w = u.shape
        values, flags = [], []
        for role_a, role_b in INDICES.values():
            ia, ib = role_band_index(waves, role_a), role_band_index(waves, role_b)
            if ia is None or ib is None:
                values.append(u.new_zeros(b, h, w))
                flags.append(0.0)
                continue
            a, c = u[:, ia], u[:, ib]
            values.append((a - c) / (a + c).clamp_min(1e-3))
            flags.append(1.0)
        visible = [i for i in (role_band_index(waves, r) for r in VISIBLE) if i is not None]
        if visible:
            values.append(u[:, visible].mean(1) / 2.0)
            flags.append(1.0)
        else:
            values.append(u.new_zeros(b, h, w))
            flags.append(0.0)
        avail = torch.tensor(flags, dtype=u.dtype, device=u.device)[None, :, None, None]
        signs = torch.tanh(self.SIGN_SLOPE * torch.stack(values[: len(INDICES)], 1))
        return torch.cat([torch.stack(values, 1), signs, avail.expand(b, -1, h, w)], 1)
