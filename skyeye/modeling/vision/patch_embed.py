"""DOFA wavelength-conditioned dynamic patch embedding.

Each input band gets a sin-cos code of its central wavelength (in nm), refined by a residual
MLP (``fclayer``). A one-layer transformer (``weight_generator``) reads learned weight tokens,
the band codes and a bias token; the band outputs become that band's conv kernel slice and the
bias token output becomes the conv bias. Parameter names and shapes follow the published
implementations (zhu-xlab/DOFA, torchgeo ``DOFAEmbedding``, DOFA-CLIP ``DOFA_PatchEmbed``) so
their checkpoints load unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Fixed by every published checkpoint: the generator's encoder layer is nn.TransformerEncoderLayer
# with 4 heads and PyTorch's default feed-forward width.
GENERATOR_HEADS = 4
GENERATOR_FFN = 2048
# Generated kernels and biases are scaled down so a fresh generator starts near a small conv.
KERNEL_SCALE = 0.01


def wavelength_code(wavelengths_nm: Tensor, dim: int) -> Tensor:
    """1-D sin-cos code (MAE style) of wavelengths in nm: (C,) -> (C, dim), float32."""
    half = dim // 2
    freq = torch.arange(half, dtype=torch.float32, device=wavelengths_nm.device) / half
    freq = 1.0 / 10000**freq
    angles = wavelengths_nm.reshape(-1).float()[:, None] * freq[None, :]
    return torch.cat([angles.sin(), angles.cos()], dim=1)


class FCResLayer(nn.Module):
    """Residual two-layer MLP on the wavelength code: x + relu(w2(relu(w1(x))))."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.w1 = nn.Linear(dim, dim)
        self.w2 = nn.Linear(dim, dim)

    def forward(self, x: Tensor) -> Tensor:
        """(C, dim) -> (C, dim)."""
        return x + F.relu(self.w2(F.relu(self.w1(x))))


class TransformerWeightGenerator(nn.Module):
    """Turns band codes into conv kernel slices and one bias vector."""

    def __init__(self, dim: int, kernel_numel: int, embed_dim: int, num_weight_tokens: int) -> None:
        super().__init__()
        layer = nn.TransformerEncoderLayer(
            d_model=dim,
            nhead=GENERATOR_HEADS,
            dim_feedforward=GENERATOR_FFN,
            dropout=0.0,
            activation="gelu",
            batch_first=False,
            norm_first=False,
        )
        self.transformer_encoder = nn.TransformerEncoder(
            layer, num_layers=1, enable_nested_tensor=False
        )
        self.fc_weight = nn.Linear(dim, kernel_numel)
        self.fc_bias = nn.Linear(dim, embed_dim)
        self.num_weight_tokens = num_weight_tokens
        self.weight_tokens = nn.Parameter(torch.empty(num_weight_tokens, dim))
        self.bias_token = nn.Parameter(torch.empty(1, dim))

    def forward(self, codes: Tensor) -> tuple[Tensor, Tensor]:
        """(C, dim) band codes -> kernels (C, k*k*D) and bias (D,)."""
        seq = torch.cat([self.weight_tokens, codes, self.bias_token], dim=0)
        out = self.transformer_encoder(seq)  # unbatched (S, dim)
        weights = self.fc_weight(out[self.num_weight_tokens : -1] + codes)
        bias = self.fc_bias(out[-1])
        return weights, bias


class DofaPatchEmbed(nn.Module):
    """Wavelength-conditioned patch embedding: (B, C, H, W) + (C,) µm -> (B, N, D)."""

    def __init__(
        self,
        patch_size: int,
        embed_dim: int,
        padding: int = 0,
        wave_dim: int = 128,
        num_weight_tokens: int = 128,
    ) -> None:
        super().__init__()
        self.kernel_size = patch_size
        self.embed_dim = embed_dim
        self.padding = padding
        self.wave_dim = wave_dim
        self.weight_generator = TransformerWeightGenerator(
            wave_dim, patch_size * patch_size * embed_dim, embed_dim, num_weight_tokens
        )
        self.fclayer = FCResLayer(wave_dim)
        # (key, (weight, bias)) of the last kernel generated outside training (`kernel`).
        self._kernel_cache: tuple[tuple, tuple[Tensor, Tensor]] | None = None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """DOFA's init: N(0, 0.02) tokens; xavier-uniform Linear weights with bias 0.01."""
        nn.init.normal_(self.weight_generator.weight_tokens, std=0.02)
        nn.init.normal_(self.weight_generator.bias_token, std=0.02)
        for module in (self.weight_generator, self.fclayer):
            for m in module.modules():
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)
                    nn.init.constant_(m.bias, 0.01)

    def grid_size(self, height: int, width: int) -> tuple[int, int]:
        """Output patch grid (rows, cols) for an input of ``height`` x ``width`` pixels."""
        k, p = self.kernel_size, self.padding
        return (height + 2 * p - k) // k + 1, (width + 2 * p - k) // k + 1

    def kernel(self, wavelengths: Tensor) -> tuple[Tensor, Tensor]:
        """Generated conv weight (D, C, k, k) and bias (D,) for bands at ``wavelengths`` µm.

        Outside training (no grad), the last band set's kernel is reused: it depends only on
        the wavelengths and this module's parameters, and the generator costs ~3 ms of every
        image's ~28 ms tower pass on a CPU thread. The key holds each parameter's storage and
        version counter, so loaded, moved or updated weights are never served a stale kernel.
        """
        if self.training or torch.is_grad_enabled():
            return self._generate(wavelengths)
        key = (
            tuple(wavelengths.tolist()),
            str(wavelengths.device),
            tuple((p.data_ptr(), p._version, p.dtype) for p in self.parameters()),
        )
        cached = self._kernel_cache  # one read: another thread may replace it meanwhile
        if cached is not None and cached[0] == key:
            return cached[1]
        kernel = self._generate(wavelengths)
        self._kernel_cache = (key, kernel)
        return kernel

    def _generate(self, wavelengths: Tensor) -> tuple[Tensor, Tensor]:
        codes = wavelength_code(wavelengths * 1000.0, self.wave_dim)
        codes = codes.to(self.weight_generator.weight_tokens.dtype)
        weights, bias = self.weight_generator(self.fclayer(codes))
        k, n_bands = self.kernel_size, wavelengths.shape[0]
        weight = weights.view(n_bands, k, k, self.embed_dim).permute(3, 0, 1, 2)
        return weight * KERNEL_SCALE, bias * KERNEL_SCALE

    def forward(self, x: Tensor, wavelengths: Tensor) -> Tensor:
        """x (B, C, H, W), wavelengths (C,) in µm -> patch embeddings (B, N, D), row-major."""
        wavelengths = check_wavelengths(x, wavelengths)
        weight, bias = self.kernel(wavelengths)
        out = F.conv2d(
            x, weight.to(x.dtype), bias.to(x.dtype), stride=self.kernel_size, padding=self.padding
        )
        return out.flatten(2).transpose(1, 2)


def check_wavelengths(x: Tensor, wavelengths: Tensor) -> Tensor:
    """Validate a (B, C, H, W) batch against its (C,) wavelengths; returns them as a tensor."""
    if x.ndim != 4:
        raise ValueError(f"pixel_values must be (B, C, H, W), got shape {tuple(x.shape)}")
    wavelengths = torch.as_tensor(wavelengths, device=x.device)
    if wavelengths.ndim != 1 or wavelengths.shape[0] != x.shape[1]:
        raise ValueError(
            f"got {x.shape[1]} bands but wavelengths of shape {tuple(wavelengths.shape)}; "
            "pass one central wavelength (µm) per band, shape (C,)"
        )
    if not torch.isfinite(wavelengths).all():
        raise ValueError(
            f"wavelengths must be finite, got {wavelengths.tolist()}; bands without an optical "
            "wavelength (e.g. SAR) need the checkpoint's placeholder value"
        )
    return wavelengths
