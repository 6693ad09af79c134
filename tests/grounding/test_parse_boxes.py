"""Reading and writing boxes, phrases and [SEG] markers in model text."""

from __future__ import annotations

import random

import pytest

from skyeye.grounding.parse import (
    GroundedBox,
    box_corners,
    format_box,
    format_boxes,
    parse_boxes,
    parse_seg_phrases,
)


def coords(b: GroundedBox) -> tuple[float, float, float, float]:
    return (round(b.x1, 6), round(b.y1, 6), round(b.x2, 6), round(b.y2, 6))


def test_single_box_and_span():
    text = "The harbour is at {<10><20><30><40>} on the left."
    (b,) = parse_boxes(text)
    assert coords(b) == (0.1, 0.2, 0.3, 0.4)
    assert b.angle is None and b.phrase is None
    assert text[b.span[0] : b.span[1]] == "{<10><20><30><40>}"


def test_angle_spaces_and_negative():
    (b,) = parse_boxes("{ <5> < 6 ><70> <80> | < -30 > }")
    assert coords(b) == (0.05, 0.06, 0.7, 0.8)
    assert b.angle == -30.0
    (b,) = parse_boxes("{<5><6><70><80>|<12.5>}")
    assert b.angle == 12.5


def test_several_boxes_delim_and_phrases():
    text = (
        "<p>ships</p> {<1><2><3><4>}{<5><6><7><8>} and <p>harbour</p> "
        "{<10><20><30><40><delim><50><60><70><80>}<delim>{<11><12><13><14>|<45>}"
    )
    boxes = parse_boxes(text)
    assert [coords(b) for b in boxes] == [
        (0.01, 0.02, 0.03, 0.04),
        (0.05, 0.06, 0.07, 0.08),
        (0.1, 0.2, 0.3, 0.4),
        (0.5, 0.6, 0.7, 0.8),
        (0.11, 0.12, 0.13, 0.14),
    ]
    assert [b.phrase for b in boxes] == ["ships", "ships", "harbour", "harbour", "harbour"]
    assert [b.angle for b in boxes] == [None, None, None, None, 45.0]
    assert text[boxes[3].span[0] : boxes[3].span[1]] == "<50><60><70><80>"


def test_lhrs_style_rule():
    a, b, c = parse_boxes("at [12, 30, 50, 90], or [0.12, 0.3, 0.5, 0.9], tiny [0, 0, 1, 1]")
    assert coords(a) == (0.12, 0.3, 0.5, 0.9)
    assert coords(b) == (0.12, 0.3, 0.5, 0.9)
    assert coords(c) == (0.0, 0.0, 0.01, 0.01)  # integers are always the 0-100 grid
    # Values above 100 are pixels of an unknown image: not read as a box.
    assert parse_boxes("[120, 30, 500, 90]") == []
    # Tags and other brackets are not boxes.
    assert parse_boxes("[grounding] [SEG] [1, 2, 3] [a, b, c, d]") == []


def test_clamping_and_swapped_corners():
    (b,) = parse_boxes("{<130><-5><20><10>}")
    assert coords(b) == (0.2, 0.0, 1.0, 0.1)


def test_truncated_answers_keep_complete_boxes():
    assert [coords(b) for b in parse_boxes("{<1><2><3><4>}{<5><6><7")] == [(0.01, 0.02, 0.03, 0.04)]
    # Four complete numbers before the answer was cut off still make a box.
    assert [coords(b) for b in parse_boxes("there: {<1><2><3><4>")] == [(0.01, 0.02, 0.03, 0.04)]
    assert parse_boxes("{<1><2><3") == []
    assert parse_boxes("<p>lake</p> {<1") == []
    assert parse_boxes("{<1><2><x><4>}") == []


def test_no_boxes_and_non_strings():
    assert parse_boxes("") == []
    assert parse_boxes("There is no harbour in this image.") == []
    assert parse_boxes(None) == []  # type: ignore[arg-type]
    assert parse_boxes(b"{<1><2><3><4>}") == []  # type: ignore[arg-type]


def test_format_round_trip():
    boxes = [
        GroundedBox(0.1, 0.2, 0.3, 0.4, phrase="car"),
        GroundedBox(0.5, 0.5, 0.9, 0.95, angle=-15.0, phrase="car"),
        GroundedBox(0.0, 0.0, 1.0, 1.0),
        GroundedBox(0.25, 0.25, 0.75, 0.75, phrase="lake"),
    ]
    text = format_boxes(boxes)
    assert text == (
        "<p>car</p> {<10><20><30><40>}{<50><50><90><95>|<-15>}{<0><0><100><100>} <p>lake</p> {<25><25><75><75>}"
    )
    back = parse_boxes(text)
    assert [coords(b) for b in back] == [coords(b) for b in boxes]
    assert [b.angle for b in back] == [b.angle for b in boxes]
    # A phrase names the boxes that follow it, so the unnamed third box inherits "car".
    assert [b.phrase for b in back] == ["car", "car", "car", "lake"]
    assert format_box(GroundedBox(0.123, 0.456, 0.789, 1.2)) == "{<12><46><79><100>}"


def test_seg_phrases():
    assert parse_seg_phrases("<p>the harbour</p> [SEG] and <p>ships</p>[SEG]") == [
        "the harbour",
        "ships",
    ]
    assert parse_seg_phrases("Sure, it is [SEG].") == [None]
    # A phrase is used once: the second [SEG] has none of its own.
    assert parse_seg_phrases("<p>a</p> [SEG] [SEG] <p>b</p> <p>c</p> [SEG]") == ["a", None, "c"]
    assert parse_seg_phrases("no masks here") == []
    assert parse_seg_phrases(None) == []  # type: ignore[arg-type]


def test_box_corners_rotation():
    b = GroundedBox(0.4, 0.45, 0.6, 0.55, angle=90.0)
    # 20 x 10 px box in a 100 x 100 image turned a quarter: 10 x 20 px, same centre.
    pts = box_corners(b, 100, 100)
    xs, ys = [p[0] for p in pts], [p[1] for p in pts]
    assert min(xs) == pytest.approx(45) and max(xs) == pytest.approx(55)
    assert min(ys) == pytest.approx(40) and max(ys) == pytest.approx(60)
    # Counter-clockwise on screen: the top-left corner goes to the bottom-left.
    assert pts[0] == pytest.approx((45, 60))
    flat = [v for p in box_corners(GroundedBox(0.1, 0.2, 0.3, 0.4), 10, 20) for v in p]
    assert flat == pytest.approx([1, 4, 3, 4, 3, 8, 1, 8])


ALPHABET = list("{}<>[]|,.-+ 0123456789pdelimSEG/\n") + [
    "<p>",
    "</p>",
    "[SEG]",
    "<delim>",
    "{<",
    "><",
    ">}",
    "é",
    "\x00",
]


@pytest.mark.parametrize("seed", range(4))
def test_fuzz_never_raises(seed):
    rng = random.Random(seed)
    for _ in range(2500):
        n = rng.randint(0, 80)
        text = "".join(rng.choice(ALPHABET) for _ in range(n))
        boxes = parse_boxes(text)
        for b in boxes:
            assert 0.0 <= b.x1 <= b.x2 <= 1.0 and 0.0 <= b.y1 <= b.y2 <= 1.0
            assert 0 <= b.span[0] < b.span[1] <= len(text)
        parse_seg_phrases(text)
        # Mutations of a valid answer (truncation, deletions) must not raise either.
        valid = format_boxes([GroundedBox(0.1, 0.2, 0.3, 0.4, angle=10.0, phrase="x")]) + " [SEG]"
        cut = valid[: rng.randint(0, len(valid))]
        parse_boxes(cut)
        parse_seg_phrases(cut)


def test_long_pathological_text_is_fast():
    import time

    text = "<p>" * 20000 + "{<1><2>" * 20000 + "[1, 2, 3, " * 20000
    start = time.perf_counter()
    assert parse_boxes(text) == []
    parse_seg_phrases(text)
    assert time.perf_counter() - start < 5.0
