"""The Gradio app is assembled with a queue, limits, the examples gallery and per-session state;
the command line rejects bad limits before loading anything."""

from __future__ import annotations

import gradio as gr
import pytest

from demo.app import build_app, build_parser, main
from demo.session import DemoConfig


def test_build_app_wires_queue_state_and_examples(tiny_model, examples_dir) -> None:
    model, processor = tiny_model
    app = build_app(
        model, processor, DemoConfig(read_size=64), examples_dir=examples_dir, concurrency=2
    )
    blocks = list(app.blocks.values())
    states = [b for b in blocks if isinstance(b, gr.State)]
    assert len(states) == 1 and states[0].value is None  # one DemoSession per browser, made lazily
    gallery = next(b for b in blocks if isinstance(b, gr.Gallery))
    assert len(gallery.value) == 3  # the three bundled real rasters
    ids = {getattr(b, "elem_id", None) for b in blocks}
    assert {"upload", "band-table", "preview", "chatbot", "question", "overlay", "downloads"} <= ids
    assert {"before-upload", "before-date", "after-upload", "after-date", "pair-slider"} <= ids
    # Send, Enter and the before/after "What changed?" button share the generation queue.
    generate = [fn for fn in app.fns.values() if fn.concurrency_id == "generate"]
    assert len(generate) == 3 and all(fn.concurrency_limit == 2 for fn in generate)
    assert app._queue.max_size == 32


def test_app_without_examples_folder_still_builds(tiny_model, tmp_path) -> None:
    model, processor = tiny_model
    app = build_app(model, processor, examples_dir=tmp_path / "missing")
    gallery = next(b for b in app.blocks.values() if isinstance(b, gr.Gallery))
    assert not gallery.visible


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--concurrency", "0"], "--concurrency must be at least 1"),
        (["--max-upload-mb", "0"], "--max-upload-mb must be positive"),
        (["--scene-overlap", "512"], "--scene-overlap must be in [0, --scene-window)"),
        (["--scene-batch", "0"], "--scene-batch must be at least 1"),
    ],
)
def test_cli_rejects_bad_limits(argv, message, capsys) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_cli_defaults_serve_localhost_on_the_embedded_model() -> None:
    args = build_parser().parse_args([])
    assert (args.host, args.model, args.concurrency) == ("127.0.0.1", "skyeye-tiny", 1)
