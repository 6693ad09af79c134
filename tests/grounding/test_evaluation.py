"""Metrics against hand-computed values (and the COCO caption code's numbers)."""

from __future__ import annotations

import itertools
import math
import random

import numpy as np
import pytest

from skyeye.evaluation.metrics import (
    _assign,
    bleu,
    box_iou,
    caption_metrics,
    cider_d,
    grounding_metrics,
    mcq_extract_letter,
    mcq_metrics,
    normalize_vqa_answer,
    refseg_metrics,
    rouge_l,
    vqa_exact_match,
)
from skyeye.grounding.parse import GroundedBox as B
from skyeye.grounding.parse import parse_boxes


# ------------------------------------------------------------ box IoU
def test_box_iou_axis_aligned():
    assert box_iou(B(0, 0, 0.5, 0.5), B(0.25, 0.25, 0.75, 0.75)) == pytest.approx(1 / 7)
    assert box_iou(B(0.1, 0.1, 0.4, 0.6), B(0.1, 0.1, 0.4, 0.6)) == 1.0
    assert box_iou(B(0, 0, 0.5, 0.5), B(0.5, 0, 1, 0.5)) == 0.0  # touching edges
    assert box_iou(B(0, 0, 0, 0), B(0, 0, 0, 0)) == 0.0  # degenerate, no division by zero


def test_box_iou_rotated():
    sq = B(0.25, 0.25, 0.75, 0.75)
    assert box_iou(sq, B(0.25, 0.25, 0.75, 0.75, angle=90.0)) == pytest.approx(1.0)
    # A square and the same square turned 45 degrees: the overlap is a regular octagon,
    # area s^2 (2 sqrt2 - 2), so IoU = (2 sqrt2 - 2) / (4 - 2 sqrt2) = 1 / sqrt2.
    assert box_iou(sq, B(0.25, 0.25, 0.75, 0.75, angle=45.0)) == pytest.approx(1 / math.sqrt(2))
    # On a 2:1 image the same normalised box is 100 x 50 px; turned 90 degrees it is 50 x 100:
    # overlap 50 x 50 = 2500, union 7500.
    assert box_iou(
        sq, B(0.25, 0.25, 0.75, 0.75, angle=90.0), image_shape=(100, 200)
    ) == pytest.approx(1 / 3)
    assert box_iou(B(0, 0, 0.1, 0.1, angle=30.0), B(0.8, 0.8, 1, 1, angle=10.0)) == 0.0


def test_rotated_iou_matches_shapely():
    shapely = pytest.importorskip("shapely")
    from shapely.geometry import Polygon

    from skyeye.grounding.parse import box_corners

    rng = random.Random(0)
    for _ in range(300):
        boxes = []
        for _ in range(2):
            x1, x2 = sorted(rng.uniform(0, 1) for _ in range(2))
            y1, y2 = sorted(rng.uniform(0, 1) for _ in range(2))
            boxes.append(B(x1, y1, x2, y2, angle=rng.choice([None, rng.uniform(-90, 90)])))
        a, b = boxes
        pa, pb = Polygon(box_corners(a, 200, 100)), Polygon(box_corners(b, 200, 100))
        ref = pa.intersection(pb).area / pa.union(pb).area if pa.union(pb).area else 0.0
        assert box_iou(a, b, image_shape=(100, 200)) == pytest.approx(ref, abs=1e-9), (
            shapely.__version__
        )


# ------------------------------------------------------------ grounding
def test_assignment_is_optimal_not_greedy():
    # Greedy takes 0.9 then 0.0 (total 0.9); the best total is 0.8 + 0.8.
    assert sorted(_assign(np.array([[0.9, 0.8], [0.8, 0.0]]))) == [(0, 1), (1, 0)]
    rng = np.random.default_rng(0)
    for shape in [(3, 3), (2, 4), (4, 2), (5, 5), (1, 3)]:
        for _ in range(20):
            m = rng.random(shape)
            got = sum(m[r, c] for r, c in _assign(m))
            k = min(shape)
            best = max(
                sum(m[r, c] for r, c in zip(rows, cols, strict=True))
                for rows in itertools.permutations(range(shape[0]), k)
                for cols in itertools.permutations(range(shape[1]), k)
            )
            assert got == pytest.approx(best)


def test_grounding_metrics_hand_computed():
    preds = [
        [B(0, 0, 0.5, 0.5)],  # exact: IoU 1, hit
        [B(0, 0, 0.5, 0.5)],  # IoU 1/7: miss
        None,  # unparseable
        [],  # answer without a box: unparseable
        [B(0.5, 0.5, 0.75, 0.75), B(0, 0, 0.5, 0.25)],  # two targets, matched crosswise
        [B(0, 0, 0.25, 0.25), B(0.75, 0.75, 1, 1)],  # one extra box
    ]
    targets = [
        [B(0, 0, 0.5, 0.5)],
        [B(0.25, 0.25, 0.75, 0.75)],
        [B(0, 0, 0.5, 0.5)],
        [B(0, 0, 0.5, 0.5)],
        [B(0, 0, 0.5, 0.5), B(0.5, 0.5, 0.75, 0.75)],  # first pair IoU exactly 0.5: not > 0.5
        [B(0, 0, 0.25, 0.25)],
    ]
    m = grounding_metrics(preds, targets)
    # Sample scores: 1, 0, 0, 0, 1/2 (one of two targets hit), 1/2 (hit / max(1 target, 2 boxes)).
    assert m["acc@0.5"] == pytest.approx(2 / 6)
    assert m["acc@0.5_parseable"] == pytest.approx(2 / 4)
    # Sample IoUs: 1, 1/7, 0, 0, (0.5 + 1) / 2, 1 / 2.
    assert m["mean_iou"] == pytest.approx((1 + 1 / 7 + 0.75 + 0.5) / 6)
    assert m["mean_iou_parseable"] == pytest.approx((1 + 1 / 7 + 0.75 + 0.5) / 4)
    assert m["n"] == 6 and m["n_parseable"] == 4 and m["unparseable"] == [2, 3]
    assert m["per_sample"][4]["target_ious"] == [0.5, 1.0]
    assert m["per_sample"][4]["hits"] == 1


def test_grounding_metrics_rotated_and_parsed_text():
    preds = [parse_boxes("{<25><25><75><75>|<45>}"), parse_boxes("garbled {<25><25")]
    targets = [[B(0.25, 0.25, 0.75, 0.75)], [B(0, 0, 1, 1)]]
    m = grounding_metrics(preds, targets)
    assert m["mean_iou"] == pytest.approx(1 / math.sqrt(2) / 2)
    assert m["acc@0.5"] == 0.5 and m["unparseable"] == [1]


def test_grounding_metrics_errors():
    with pytest.raises(ValueError, match="2 predictions for 1"):
        grounding_metrics([None, None], [[B(0, 0, 1, 1)]])
    with pytest.raises(ValueError, match="no target box"):
        grounding_metrics([None], [[]])


# ------------------------------------------------------------ refseg
def test_refseg_metrics_hand_computed():
    z = np.zeros((4, 4), bool)
    p0, g0 = z.copy(), z.copy()
    p0[:2, :2] = True
    g0[:2, 1:3] = True  # overlap 2 px, union 6 px
    g2 = z.copy()
    g2[3, :] = True
    g3 = z.copy()
    g3[0, :3] = True
    m = refseg_metrics([p0, z, None, g3.astype(np.uint8)], [g0, z, g2, g3])
    assert [s["iou"] for s in m["per_sample"]] == pytest.approx([1 / 3, 1.0, 0.0, 1.0])
    assert m["giou"] == pytest.approx(7 / 12)
    assert m["ciou"] == pytest.approx((2 + 0 + 0 + 3) / (6 + 0 + 4 + 3))
    assert m["precision@0.5"] == 0.5
    assert m["unparseable"] == [2]
    half = z.copy()
    half[:2, :] = True
    quarter = z.copy()
    quarter[:1, :] = True
    # IoU exactly 0.5 does not count for precision@0.5.
    assert refseg_metrics([quarter], [half], thresholds=(0.5, 0.4))["precision@0.5"] == 0.0
    assert refseg_metrics([quarter], [half], thresholds=(0.5, 0.4))["precision@0.4"] == 1.0
    assert refseg_metrics([z], [z])["ciou"] == 1.0


def test_refseg_errors():
    with pytest.raises(ValueError, match="resize the prediction"):
        refseg_metrics([np.zeros((2, 2), bool)], [np.zeros((3, 3), bool)])
    with pytest.raises(ValueError, match="threshold logits"):
        refseg_metrics([np.full((2, 2), 0.7)], [np.zeros((2, 2), bool)])


# ------------------------------------------------------------ VQA / MCQ
def test_vqa_exact_match():
    assert normalize_vqa_answer(" Yes. ") == "yes"
    assert normalize_vqa_answer("3.5") == "3.5"
    m = vqa_exact_match(
        ["Yes.", " two  cars ", "3.5", None, "no", "2"],
        ["yes", "Two cars", "3.5.", "yes", ["No", "none"], "3"],
    )
    assert [s["correct"] for s in m["per_sample"]] == [True, True, True, False, True, False]
    assert m["accuracy"] == pytest.approx(4 / 6)


@pytest.mark.parametrize(
    "text,letter",
    [
        ("B", "B"),
        ("(C)", "C"),
        ("D.", "D"),
        ("B. harbour", "B"),
        ("C) three", "C"),
        ("The answer is B.", "B"),
        ("Answer: (A)", "A"),
        ("I think the correct option is D because of the wakes.", "D"),
        ("A large harbour is visible, so the answer is C", "C"),
        ("The image shows (B) a port", "B"),
        ("Option A", "A"),
        ("A large harbour", None),
        ("B or C", None),
        ("the answer is a harbour", None),
        ("", None),
        (None, None),
    ],
)
def test_mcq_extract_letter(text, letter):
    assert mcq_extract_letter(text) == letter


def test_mcq_metrics():
    m = mcq_metrics(["B", "(A) dense", "no idea", "D"], ["B", "C", "A", "d"])
    assert m["accuracy"] == 0.5 and m["unparseable"] == [2]
    with pytest.raises(ValueError, match="not one of A-D"):
        mcq_metrics(["A"], ["E"])


# ------------------------------------------------------------ captions
def test_bleu_hand_computed():
    # Clipped precisions 5/6, 3/5, 2/4, 1/3; equal lengths so no brevity penalty.
    one = bleu(["the cat sat on the mat"], [["the cat sat on a mat"]])
    assert one["bleu_n"][0] == pytest.approx(5 / 6)
    assert one["bleu"] == pytest.approx((5 / 6 * 3 / 5 * 2 / 4 * 1 / 3) ** 0.25)
    # Closest reference length 3 (not 6): BP = exp(1 - 3/2); no trigram -> BLEU-3/4 = 0.
    short = bleu(["The cat."], [["the cat sat on the mat", "the cat sat"]])
    assert short["bleu_n"] == pytest.approx([math.exp(-0.5), math.exp(-0.5), 0.0, 0.0])
    # Corpus: counts summed, c = 8, r = 9.
    both = bleu(
        ["the cat sat on the mat", "The cat."],
        [["the cat sat on a mat"], ["the cat sat on the mat", "the cat sat"]],
    )
    assert both["bleu"] == pytest.approx(
        math.exp(1 - 9 / 8) * (7 / 8 * 4 / 6 * 2 / 4 * 1 / 3) ** 0.25
    )
    assert both["per_sample"] == pytest.approx([one["bleu"], 0.0])


def test_rouge_l_hand_computed():
    # LCS "the cat on the mat" = 5 of 6 both ways.
    assert rouge_l(["the cat sat on the mat"], [["the cat is on the mat"]])[
        "rouge_l"
    ] == pytest.approx(5 / 6)
    # Best P = 3/4 (ref 2), best R = 2/2 (ref 1); F = 2.44 * 0.75 / (1 + 1.44 * 0.75).
    assert rouge_l(["a b c d"], [["a c", "b c d e f"]])["rouge_l"] == pytest.approx(
        2.44 * 0.75 / 2.08
    )
    assert rouge_l([""], [["a b"]])["rouge_l"] == 0.0


def test_cider_hand_computed():
    # N = 2 documents; every n-gram has df 1, so weight ln 2. Sample 1 matches exactly for
    # n = 1, 2 (cosine 1) and has no 3/4-grams (0): mean 0.5, x10 = 5. Sample 2 shares nothing.
    m = cider_d(["a b", "c"], [["a b"], ["d"]])
    assert m["per_sample"] == pytest.approx([5.0, 0.0])
    assert m["cider"] == pytest.approx(2.5)
    # A word in every document's references carries no information (idf 0).
    assert cider_d(["x", "x"], [["x"], ["x"]])["cider"] == 0.0
    # Length penalty: 'a b' vs reference 'a b c' ... with sigma 6 -> exp(-1/72) on each n.
    pen = cider_d(["a b", "z"], [["a b c"], ["y"]])["per_sample"][0]
    w = math.log(2)
    cos1 = 2 * w * w / (math.sqrt(2) * w * math.sqrt(3) * w)
    cos2 = 1 * w * w / (1 * w * math.sqrt(2) * w)
    assert pen == pytest.approx((cos1 + cos2) / 4 * math.exp(-1 / 72) * 10)


def test_caption_metrics_match_coco_caption_code():
    """Values from pycocoevalcap 1.2 (Bleu, Rouge, Cider scorers) on the same tokens."""
    hyps = [
        "a large harbour with many boats",
        "two planes parked near the terminal",
        "a green field",
        "many buildings and a road in a dense residential area",
    ]
    refs = [
        [
            "there is a harbour with many boats",
            "many boats are docked in a large harbour",
            "a harbour",
        ],
        ["two airplanes are parked near a terminal building", "planes parked at the terminal"],
        ["a green farmland field", "green fields"],
        [
            "a dense residential area with many buildings",
            "many buildings are near a road",
            "residential area with roads",
        ],
    ]
    m = caption_metrics(hyps, refs)
    assert m["bleu_n"] == pytest.approx(
        [0.88, 0.765941686171515, 0.5567208655054245, 0.40364519298088813], abs=1e-9
    )
    assert m["rouge_l"] == pytest.approx(0.75571448805178, abs=1e-12)
    assert m["cider"] == pytest.approx(2.464621933531636, abs=1e-12)
    assert [s["cider"] for s in m["per_sample"]] == pytest.approx(
        [3.0603600804992555, 2.4542777458907277, 2.126194583417445, 2.217655324319118]
    )
    with pytest.raises(ValueError, match="non-empty list"):
        caption_metrics(["a"], ["a"])
