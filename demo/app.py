"""The SkyEye Gradio app: `python -m demo [--model skyeye-tiny] [--host 127.0.0.1] [--port 7860]`.

The model is loaded once per process and shared; each browser session gets its own
`DemoSession` (images, band edits, chat history, result files). Generation goes through
Gradio's queue with a concurrency limit, and uploads are capped in size.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import gradio as gr
import torch

from demo.bands import HEADERS
from demo.examples import DEFAULT_EXAMPLES_DIR, render_thumbnails
from demo.handlers import SENSOR_CHOICES, DemoHandlers
from demo.options import build_parser as build_parser
from demo.options import parse_auth as parse_auth
from demo.session import UPLOAD_EXTENSIONS, DemoConfig, DemoSession
from demo.workspace import create_work_root, remove_work_root
from skyeye.logs import configure_logging
from skyeye.scenechat.follow import SceneOptions

logger = logging.getLogger(__name__)

#: A browser session's state is dropped this long after its last change (or when the tab closes).
SESSION_TTL_S = 2 * 3600
#: Gradio's cache sweep (frequency, age) in seconds: its temporary files (rendered overlays) are
#: deleted an hour after they were made, and all of them when the server stops.
DELETE_CACHE = (900, 3600)

INTRO = """# SkyEye
Chat about Earth-observation images: RGB photos, multispectral GeoTIFFs (Sentinel-2, Landsat,
NAIP) and Sentinel-1 SAR. Upload one or several images (or click an example), check the band
table (the model is conditioned on each band's wavelength), then ask. Boxes and masks in the
answer are drawn on the image and, for georeferenced images, offered as GeoJSON / GeoTIFF. For a
georeferenced image larger than the scene window, a mask or amount answer is also asked of the
whole scene at its own resolution (switch below the chat): its full-resolution mask (COG GeoTIFF)
and polygons (GeoJSON) are then the downloads. Under "Before / after", two images of one place
(each with its date, else the file's own) are aligned and compared: "What changed?" draws the
change mask on the after image and gives the areas gained and lost per class."""


def _close_session(state: DemoSession | None) -> None:
    if state is not None:
        state.close()


def build_app(
    model: Any,
    processor: Any,
    config: DemoConfig | None = None,
    *,
    examples_dir: Path | None = DEFAULT_EXAMPLES_DIR,
    concurrency: int = 1,
    queue_size: int = 32,
    model_name: str = "skyeye-tiny",
) -> gr.Blocks:
    """The Gradio Blocks app around a loaded model and processor (not yet launched)."""
    config = config or DemoConfig()
    if config.work_root is None:
        config = dataclasses.replace(config, work_root=create_work_root())
    if examples_dir is not None and not examples_dir.is_dir():
        logger.warning("examples folder %s not found: the gallery stays empty", examples_dir)
        examples_dir = None
    handlers = DemoHandlers(model, processor, config, examples_dir)
    thumbs = (
        render_thumbnails(
            examples_dir, Path(tempfile.mkdtemp(prefix="thumbs-", dir=config.work_root))
        )
        if examples_dir is not None
        else []
    )
    with gr.Blocks(title="SkyEye", fill_width=True, delete_cache=DELETE_CACHE) as app:
        state = gr.State(None, time_to_live=SESSION_TTL_S, delete_callback=_close_session)
        gr.Markdown(INTRO + f"\n\nModel: `{model_name}`.")
        with gr.Row(equal_height=False):
            with gr.Column(scale=5):
                files = gr.File(
                    label=f"Images (PNG, JPG, GeoTIFF, JP2; up to {config.max_upload_mb:g} MB each)",
                    file_count="multiple",
                    file_types=list(UPLOAD_EXTENSIONS),
                    elem_id="upload",
                )
                gallery = gr.Gallery(
                    value=[(str(png), caption) for _, png, caption in thumbs],
                    label="Examples: click one to add it (licences in examples/ATTRIBUTION.md)",
                    columns=3,
                    height=220,
                    allow_preview=False,
                    visible=bool(thumbs),
                    elem_id="examples",
                )
                with gr.Accordion("Before / after: what changed?", open=True, elem_id="pair"):
                    pair_inputs = {}
                    with gr.Row():
                        for slot in ("before", "after"):
                            with gr.Column(min_width=200):
                                pair_inputs[slot] = (
                                    gr.File(
                                        label=f"{slot.capitalize()} image",
                                        file_count="single",
                                        file_types=list(UPLOAD_EXTENSIONS),
                                        height=120,
                                        elem_id=f"{slot}-upload",
                                    ),
                                    gr.Textbox(
                                        label=f"{slot.capitalize()} date",
                                        placeholder="YYYY-MM-DD (empty: the file's own date)",
                                        elem_id=f"{slot}-date",
                                    ),
                                )
                    pair_view = gr.ImageSlider(
                        label="Before | after: drag to swipe (the change mask on the after side)",
                        type="numpy",
                        interactive=False,
                        height=360,
                        elem_id="pair-slider",
                    )
                    compare = gr.Button("What changed?", elem_id="compare")
                with gr.Row():
                    image_choice = gr.Dropdown(label="Image", choices=[], elem_id="image-choice")
                    preview_mode = gr.Dropdown(label="Preview", choices=[], elem_id="preview-mode")
                summary = gr.Markdown("No image yet: upload one or pick an example.")
                preview = gr.Image(
                    label="Preview", type="numpy", interactive=False, height=360, elem_id="preview"
                )
                with gr.Accordion("Bands: names and wavelengths", open=True):
                    sensor = gr.Dropdown(
                        SENSOR_CHOICES, value=None, label="Sensor", elem_id="sensor"
                    )
                    table = gr.Dataframe(
                        headers=HEADERS,
                        datatype=["number", "str", "number"],
                        type="array",
                        interactive=True,
                        elem_id="band-table",
                    )
                    apply_table = gr.Button("Apply table", elem_id="apply-table")
            with gr.Column(scale=6):
                chatbot = gr.Chatbot(label="Chat", height=420, elem_id="chatbot")
                question = gr.Textbox(
                    placeholder="Ask about the images, e.g. 'Is there water in this image?'",
                    show_label=False,
                    elem_id="question",
                )
                with gr.Row():
                    send = gr.Button("Send", variant="primary", elem_id="send")
                    new_chat = gr.Button("New conversation", elem_id="reset")
                scene_switch = gr.Checkbox(
                    value=config.scene,
                    label=f"Images larger than {config.scene_options.window} px: answer masks and "
                    "amounts on the whole scene at its own resolution",
                    elem_id="scene-switch",
                )
                note = gr.Markdown(elem_id="result-note")
                overlay = gr.Image(
                    label="Answer: boxes and masks",
                    type="numpy",
                    interactive=False,
                    height=360,
                    elem_id="overlay",
                )
                downloads = gr.File(
                    label="Results (GeoJSON, mask GeoTIFF)",
                    file_count="multiple",
                    interactive=False,
                    elem_id="downloads",
                )

        view = [image_choice, table, sensor, preview_mode, preview, summary]
        files.upload(handlers.upload, [files, state], [state, *view, files])
        gallery.select(handlers.add_example, [state], [state, *view])
        image_choice.input(handlers.select_image, [image_choice, state], [state, *view])
        sensor.input(handlers.set_sensor, [image_choice, sensor, state], [state, *view])
        apply_table.click(
            handlers.apply_table, [image_choice, table, sensor, state], [state, *view]
        )
        preview_mode.input(
            handlers.set_preview, [image_choice, preview_mode, state], [state, preview]
        )
        (before_file, before_date), (after_file, after_date) = pair_inputs.values()
        for slot_file, upload_slot in (
            (before_file, handlers.upload_before),
            (after_file, handlers.upload_after),
        ):
            slot_file.upload(upload_slot, [slot_file, state], [state, *view, pair_view, slot_file])
        chat_outputs = [chatbot, question, overlay, downloads, note, summary, state]
        for trigger in (question.submit, send.click):
            trigger(
                handlers.chat,
                [question, chatbot, state, scene_switch, before_date, after_date],
                chat_outputs,
                concurrency_limit=concurrency,
                concurrency_id="generate",
            ).then(handlers.pair_view, [state], [pair_view])
        compare.click(
            handlers.compare,
            [chatbot, state, scene_switch, before_date, after_date],
            chat_outputs,
            concurrency_limit=concurrency,
            concurrency_id="generate",
        ).then(handlers.pair_view, [state], [pair_view])
        new_chat.click(
            handlers.reset, [state], [state, chatbot, overlay, downloads, note, *view]
        ).then(lambda: None, None, [pair_view])
    app.queue(default_concurrency_limit=max(concurrency, 4), max_size=queue_size)
    app.skyeye_work_root = config.work_root  # removed by main() when the server stops
    return app


def load_model(
    name: str,
    *,
    device: str = "cpu",
    dtype: torch.dtype | None = None,
    cache_dir: str | None = None,
) -> tuple[Any, Any]:
    """(model, processor) loaded once, the way `skyeye.load_chat` loads them, and shared by every
    session."""
    from skyeye.chat.session import load_chat

    chat = load_chat(name, device=device, dtype=dtype, cache_dir=cache_dir)
    return chat.model, chat.processor


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    configure_logging(args.verbose)
    if not 0 <= args.scene_overlap < args.scene_window:
        print(
            f"error: --scene-overlap must be in [0, --scene-window), got {args.scene_overlap} "
            f"for a {args.scene_window}-px window",
            file=sys.stderr,
        )
        return 2
    for flag, value in (
        ("--concurrency", args.concurrency),
        ("--max-images", args.max_images),
        ("--scene-batch", args.scene_batch),
        ("--max-pixels", args.max_pixels),
    ):
        if value < 1:
            print(f"error: {flag} must be at least 1, got {value}", file=sys.stderr)
            return 2
    for flag, limit in (
        ("--max-upload-mb", args.max_upload_mb),
        ("--max-total-upload-mb", args.max_total_upload_mb),
    ):
        if limit <= 0:
            print(f"error: {flag} must be positive, got {limit}", file=sys.stderr)
            return 2
    try:
        auth = parse_auth(args.auth, args.auth_file)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if args.host not in ("127.0.0.1", "localhost", "::1") and not auth:
        logger.warning(
            "serving on %s without --auth: anyone who can reach it can upload files and use "
            "the model (see docs/demo.md)",
            args.host,
        )
    from skyeye.chat.loading import chat_dtype

    dtype = chat_dtype(args.dtype, args.device)
    started = time.perf_counter()
    try:
        model, processor = load_model(
            args.model, device=args.device, dtype=dtype, cache_dir=args.cache_dir
        )
    except (OSError, ValueError, KeyError, RuntimeError) as err:
        print(f"error: cannot load model {args.model!r}: {err}", file=sys.stderr)
        return 2
    logger.info("model %s loaded in %.1f s", args.model, time.perf_counter() - started)
    config = DemoConfig(
        max_upload_mb=args.max_upload_mb,
        max_total_upload_mb=args.max_total_upload_mb,
        max_pixels=args.max_pixels,
        max_images=args.max_images,
        read_size=args.read_size,
        max_new_tokens=args.max_new_tokens,
        scene=not args.no_scene,
        scene_options=SceneOptions(
            window=args.scene_window, overlap=args.scene_overlap, batch=args.scene_batch
        ),
    )
    app = build_app(
        model,
        processor,
        config,
        examples_dir=args.examples_dir,
        concurrency=args.concurrency,
        queue_size=args.queue_size,
        model_name=args.model,
    )
    root = app.skyeye_work_root
    print(
        f"SkyEye demo on http://{args.host}:{args.port} (Ctrl-C to stop); session files in {root}",
        flush=True,
    )
    # SIGTERM (service managers, `kill`) ends the server like Ctrl-C, so the cleanup below runs.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        app.launch(
            server_name=args.host,
            server_port=args.port,
            max_file_size=f"{args.max_upload_mb:g}mb",
            show_error=True,
            theme=gr.themes.Soft(),
            auth=auth or None,
        )
    finally:
        app.close()
        remove_work_root(root)
    return 0
