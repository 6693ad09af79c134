"""The light [SEG] mask head: shapes, errors, losses, registry, and learning a toy task on CPU."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest
import torch

from skyeye.modeling.mask_decoders import (
    MaskDecoder,
    get_mask_decoder,
    list_mask_decoders,
    mask_losses,
)
from skyeye.modeling.mask_decoders.light import SkyEyeMaskHead

D = 32


def tiny_config(hidden: int = D, layers: int = 2) -> SimpleNamespace:
    return SimpleNamespace(
        text_config=SimpleNamespace(hidden_size=48),
        vision_config=SimpleNamespace(hidden_size=D),
        mask_head_hidden_size=hidden,
        mask_head_layers=layers,
    )


def test_forward_shapes_and_protocol():
    torch.manual_seed(0)
    head = SkyEyeMaskHead(tiny_config())
    assert isinstance(head, MaskDecoder)
    out = head(torch.randn(3, 48), torch.randn(3, 12, D), (3, 4), (17, 23))
    assert out.shape == (3, 17, 23)
    assert torch.isfinite(out).all()
    # Several [SEG] in one answer -> several different masks.
    assert not torch.allclose(out[0], out[1])


def test_zero_masks():
    head = SkyEyeMaskHead(tiny_config())
    out = head(torch.zeros(0, 48), torch.zeros(0, 16, D), (4, 4), (8, 8))
    assert out.shape == (0, 8, 8)


@pytest.mark.parametrize(
    "seg,vis,grid,match",
    [
        ((2, 47), (2, 16, D), (4, 4), "seg_hidden must be"),
        ((2, 48), (2, 16, D + 1), (4, 4), "vision_features must be"),
        ((2, 48), (3, 16, D), (4, 4), "one image-feature row per"),
        ((2, 48), (2, 16, D), (4, 5), "grid"),
    ],
)
def test_bad_inputs_name_the_problem(seg, vis, grid, match):
    head = SkyEyeMaskHead(tiny_config())
    with pytest.raises(ValueError, match=match):
        head(torch.zeros(seg), torch.zeros(vis), grid, (8, 8))


def test_bad_hidden_size():
    with pytest.raises(ValueError, match="multiple of 8"):
        SkyEyeMaskHead(tiny_config(hidden=12))


def test_registry():
    assert "light" in list_mask_decoders()
    assert get_mask_decoder("light") is SkyEyeMaskHead
    with pytest.raises(KeyError, match="available"):
        get_mask_decoder("sam-huge")


def test_mask_losses_values():
    # Confident correct prediction: both losses near 0.
    t = torch.zeros(2, 4, 4)
    t[0, :2, :2] = 1
    good = (t * 2 - 1) * 20
    losses = mask_losses(good, t)
    assert losses["bce"] < 1e-6 and losses["dice"] < 1e-4
    # Logits 0 -> p = 0.5 everywhere: BCE = ln 2, dice per mask by hand.
    zero = torch.zeros(2, 4, 4)
    losses = mask_losses(zero, t)
    assert losses["bce"].item() == pytest.approx(0.693147, abs=1e-5)
    s = 1e-3
    dice0 = 1 - (2 * 0.5 * 4 + s) / (0.5 * 16 + 4 + s)  # mask with 4 positive pixels
    dice1 = 1 - (0 + s) / (0.5 * 16 + 0 + s)  # empty target
    assert losses["dice"].item() == pytest.approx((dice0 + dice1) / 2, abs=1e-6)
    with pytest.raises(ValueError, match="both be"):
        mask_losses(torch.zeros(2, 4, 4), torch.zeros(2, 4, 5))
    empty = mask_losses(torch.zeros(0, 4, 4, requires_grad=True), torch.zeros(0, 4, 4))
    assert empty["bce"].item() == 0.0 and empty["bce"].requires_grad


def _toy_batch(gen: torch.Generator, n: int, signals: torch.Tensor, queries: torch.Tensor):
    """Two 2x2-token squares (class 0 and class 1) in a 4x4 grid of noise; the query names one.

    Target: that square at 16 x 16 px (each token = 4 x 4 px).
    """
    feats = torch.randn(n, 16, D, generator=gen)
    targets = torch.zeros(n, 16, 16)
    cls = torch.randint(0, 2, (n,), generator=gen)
    corners = [(r, c) for r in range(3) for c in range(3)]
    for i in range(n):
        while True:
            a, b = torch.randint(0, 9, (2,), generator=gen).tolist()
            (ra, ca), (rb, cb) = corners[a], corners[b]
            if abs(ra - rb) >= 2 or abs(ca - cb) >= 2:  # the squares do not overlap
                break
        for k, (r, c) in enumerate([(ra, ca), (rb, cb)]):
            for dr in range(2):
                for dc in range(2):
                    feats[i, (r + dr) * 4 + (c + dc)] += signals[k]
            if k == cls[i]:
                targets[i, r * 4 : (r + 2) * 4, c * 4 : (c + 2) * 4] = 1
    return queries[cls], feats, targets, cls


def _iou(logits: torch.Tensor, targets: torch.Tensor) -> float:
    pred = logits > 0
    tgt = targets > 0.5
    return ((pred & tgt).sum() / (pred | tgt).sum().clamp(min=1)).item()


def test_learns_toy_segmentation_task():
    """The query decides which of two squares to segment; loss must fall and IoU rise."""
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    signals = torch.randn(2, D, generator=gen) * 1.5
    queries = torch.randn(2, 48, generator=gen)
    head = SkyEyeMaskHead(tiny_config())
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    q_eval, f_eval, t_eval, cls_eval = _toy_batch(gen, 64, signals, queries)

    def loss_fn(q, f, t):
        out = head(q, f, (4, 4), (16, 16))
        losses = mask_losses(out, t)
        return 2.0 * losses["bce"] + 0.5 * losses["dice"], out

    with torch.no_grad():
        loss0, out0 = loss_fn(q_eval, f_eval, t_eval)
    iou0 = _iou(out0, t_eval)
    start = time.perf_counter()
    for _ in range(50):
        loss, _ = loss_fn(*_toy_batch(gen, 16, signals, queries)[:3])
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        loss1, out1 = loss_fn(q_eval, f_eval, t_eval)
    iou1 = _iou(out1, t_eval)
    print(
        f"toy task: loss {loss0:.3f} -> {loss1:.3f}, IoU {iou0:.3f} -> {iou1:.3f}, {time.perf_counter() - start:.1f}s"
    )
    assert loss1 < 0.5 * loss0
    assert iou0 < 0.4
    assert iou1 > 0.8
    # The mask follows the [SEG] query: asking for the other square gives the other square.
    with torch.no_grad():
        _, swapped = loss_fn(queries[1 - cls_eval], f_eval, t_eval)
    assert _iou(swapped, t_eval) < 0.1
