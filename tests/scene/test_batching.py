"""Batched windows give the answers and masks of one window at a time, and the masks taken from
the generation's own hidden states equal those of a second forward pass (`predict_masks`)."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import rasterio
import torch
from skyeye_testing import REPO
from transformers import LogitsProcessor, LogitsProcessorList

from skyeye.chat.session import ChatSession
from skyeye.io.raster import read_raster
from skyeye.scene.infer import WindowRunner

EXAMPLE = REPO / "examples" / "sentinel2_berlin_l1c.tif"
PROMPT = "segment the lake"


class ScriptedAnswer(LogitsProcessor):
    """Greedy but steered: the model's own first token, then "<p> lake </p> [SEG]", then end of
    turn, or first one more free token for windows whose first score of `token` is above
    `threshold`: answers of different lengths in one batch, whose [SEG] hidden states depend
    on each window's pixels."""

    def __init__(self, prompt_length: int, script: list[int], eos: int, token: int) -> None:
        self.prompt_length, self.script, self.eos, self.token = prompt_length, script, eos, token
        self.threshold = 0.0
        self.longer: list[bool] = []

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        step = input_ids.shape[1] - self.prompt_length
        if step == 0:
            self.longer = (scores[:, self.token] > self.threshold).tolist()
        forced = scores.clone()
        for row in range(scores.shape[0]):
            if step == 0 or (step == len(self.script) + 1 and self.longer[row]):
                forced[row, self.eos] = -float("inf")  # the model's own choice
                continue
            token = self.script[step - 1] if step <= len(self.script) else self.eos
            forced[row] = -float("inf")
            forced[row, token] = 0.0
        return forced


@pytest.fixture(scope="module")
def windows() -> list:
    """Six 48 x 48 windows of the real 13-band Sentinel-2 example."""
    out = []
    with rasterio.open(EXAMPLE) as src:
        names = list(src.descriptions)
        for k in range(6):
            win = rasterio.windows.Window(20 + 40 * k, 30 + 17 * k, 48, 48)
            data = src.read(window=win, out_dtype="float32")
            image = read_raster(EXAMPLE, max_size=64)  # band metadata of the file
            image.data = data
            image.band_names = names
            out.append(image)
    return out


def _runner(session: ChatSession, windows: list, max_new_tokens: int = 16) -> WindowRunner:
    runner = WindowRunner(session, PROMPT, max_new_tokens=max_new_tokens)
    tokenizer = session.processor.tokenizer
    script = tokenizer("<p> lake </p> [SEG]", add_special_tokens=False)["input_ids"]
    eos = tokenizer.convert_tokens_to_ids("<|im_end|>")
    steer = ScriptedAnswer(runner._ids.shape[1], script, eos, token=0)
    # The token whose first score varies most between the windows, split at its median: half
    # of the windows answer one token longer.
    model, processor = session.model, session.processor
    features = processor.image_processor(list(windows), return_tensors="pt")
    ids = runner._ids.repeat(len(windows), 1)
    with torch.no_grad():
        embeds, _, _ = model.embed_inputs(
            ids, list(features["pixel_values"]), list(features["wavelengths"])
        )
        first = model.language_model(inputs_embeds=embeds).logits[:, -1].float()
    steer.token = int(first.std(0).argmax())
    values = first[:, steer.token].sort().values
    steer.threshold = float(values[len(values) // 2 - 1] + values[len(values) // 2]) / 2
    lm = session.model.language_model
    original = getattr(lm.generate, "func", lm.generate)
    lm.generate = functools.partial(original, logits_processor=LogitsProcessorList([steer]))
    return runner


def _reference_probs(runner: WindowRunner, images: list) -> list[np.ndarray | None]:
    """Masks by the old route: the answer, then a second forward over prompt + answer."""
    calls: list = []
    model = runner.model
    original = model.predict_masks

    def spy(inputs, new_ids):
        calls.append((inputs, new_ids))
        return original(inputs, new_ids)

    model.predict_masks = spy
    try:
        # A [SEG] "without hidden state" makes the runner take predict_masks: force that route.
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(runner, "_seg_masks", lambda inputs, new_ids, states: spy(inputs, new_ids))
            answers = runner.run(images)
    finally:
        del model.predict_masks
    assert calls, "the reference route never decoded a mask"
    return [a.prob for a in answers]


def test_batched_windows_give_the_answers_and_masks_of_single_windows(session, windows):
    runner = _runner(session, windows)
    assert runner.prefix_length > 0  # the system prompt's cache is shared by every window
    batched = runner.run(windows)
    single = [runner.run([w])[0] for w in windows]
    assert [a.text for a in batched] == [a.text for a in single]
    assert len({len(a.text.split()) for a in batched}) > 1, "answers of one length only"
    for b, s in zip(batched, single, strict=True):
        assert b.prob is not None and s.prob is not None and b.phrase == s.phrase == "lake"
        np.testing.assert_allclose(b.prob, s.prob, atol=1e-5)


def test_masks_from_the_generation_equal_a_second_forward_pass(session, windows):
    runner = _runner(session, windows)
    calls: list = []
    original = session.model.predict_masks
    session.model.predict_masks = lambda *a: calls.append(a) or original(*a)
    try:
        fast = runner.run(windows)
    finally:
        del session.model.predict_masks
    assert not calls, "the hidden states of the generation were not used"
    reference = _reference_probs(runner, windows)
    for a, ref in zip(fast, reference, strict=True):
        assert a.prob is not None and ref is not None
        np.testing.assert_allclose(a.prob, ref, atol=1e-5)


def test_a_seg_cut_off_as_the_last_token_falls_back_to_a_forward_pass(session, windows):
    # 5 new tokens: t0 <p> lake </p> [SEG] -- the [SEG] is fed to no forward pass.
    runner = _runner(session, windows, max_new_tokens=5)
    answers = runner.run(windows[:3])
    reference = _reference_probs(runner, windows[:3])
    for a, ref in zip(answers, reference, strict=True):
        assert a.text.endswith("[seg]") or a.text.endswith("[SEG]")
        assert a.prob is not None and ref is not None
        np.testing.assert_allclose(a.prob, ref, atol=1e-6)


def test_a_scene_run_in_batches_equals_one_window_at_a_time(session, windows, tmp_path):
    from skyeye.scene import analyze_scene
    from skyeye.scene.pipeline import WORK_DIR
    from skyeye.scene.store import WindowStore

    scene = tmp_path / "T33UUU_20170216T102101_crop.tif"
    with rasterio.open(EXAMPLE) as src:
        win = rasterio.windows.Window(60, 40, 120, 100)
        profile = src.profile | {
            "height": 100,
            "width": 120,
            "transform": src.window_transform(win),
            "tiled": False,
        }
        profile.pop("blockxsize", None)
        profile.pop("blockysize", None)
        with rasterio.open(scene, "w", **profile) as dst:
            dst.write(src.read(window=win))
            dst.descriptions = src.descriptions
    _runner(session, windows)  # steers this session's generation (the runner itself is unused)
    kw = {"window": 48, "overlap": 16, "progress": False, "max_new_tokens": 16}
    runs = {
        b: analyze_scene(scene, PROMPT, tmp_path / f"b{b}", model=session, batch=b, **kw)
        for b in (4, 1)
    }
    texts = {b: [w.get("answer") for w in r.answer["windows"]] for b, r in runs.items()}
    assert texts[4] == texts[1] and all(t and "lake" in t for t in texts[4])
    stores = {b: WindowStore.existing(tmp_path / f"b{b}" / WORK_DIR) for b in runs}
    for w in runs[4].answer["windows"]:
        a, b = (stores[k].arrays(w["index"])["prob"].astype(np.float32) for k in (4, 1))
        np.testing.assert_allclose(a, b, atol=2e-3)  # stored as float16
    with rasterio.open(runs[4].paths["mask"]) as a, rasterio.open(runs[1].paths["mask"]) as b:
        differ = (a.read(1) != b.read(1)).mean()
    assert differ < 1e-3
