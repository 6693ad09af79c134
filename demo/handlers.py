"""Gradio event handlers: thin functions from UI values to UI values around `DemoSession`.

Every handler takes the session state (None until the browser's first action) and returns it,
so Gradio keeps one `DemoSession` per browser session. User mistakes become `gr.Error`
messages; an unexpected failure is logged with its traceback and shown as a short message. A
failed chat turn is reported in the chat itself (`DemoHandlers.chat`).
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import gradio as gr

from demo.bands import NO_SENSOR
from demo.examples import EXAMPLES
from demo.pair import CHANGE_QUESTION, pair_images, upload_to_slot
from demo.session import DemoConfig, DemoError, DemoSession
from demo.workspace import discard_upload
from skyeye.io.sensors import list_sensors
from skyeye.render.previews import preview_modes

logger = logging.getLogger(__name__)

SENSOR_CHOICES = [*list_sensors(), NO_SENSOR]
#: Starts the chat message that reports a failed turn.
ERROR_MARK = "⚠️"
#: Outputs of every handler that changes which image is shown (see `DemoHandlers.view`).
View = tuple[Any, Any, Any, Any, Any, str]


def user_errors(fn: Callable) -> Callable:
    """Turn `DemoError` into `gr.Error` and anything unexpected into a logged, short `gr.Error`."""

    def translate(err: Exception) -> gr.Error:
        if isinstance(err, gr.Error):
            return err
        if isinstance(err, DemoError):
            return gr.Error(str(err), print_exception=False)
        logger.error("demo handler %s failed", fn.__name__, exc_info=err)
        return gr.Error(f"Something went wrong: {type(err).__name__}: {err}")

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen_wrapper(*args: Any, **kwargs: Any) -> Iterator[Any]:
            try:
                yield from fn(*args, **kwargs)
            except Exception as err:
                raise translate(err) from None

        return gen_wrapper

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            raise translate(err) from None

    return wrapper


class DemoHandlers:
    """Handlers bound to the process-wide model and processor."""

    def __init__(self, model: Any, processor: Any, config: DemoConfig, examples_dir: Path | None):
        self.model = model
        self.processor = processor
        self.config = config
        self.examples_dir = examples_dir

    def session(self, state: DemoSession | None) -> DemoSession:
        return state if state is not None else DemoSession(self.model, self.processor, self.config)

    # ------------------------------------------------------------------ view
    def view(self, session: DemoSession, index: int | None) -> View:
        """(image choice, band table, sensor, preview mode, preview, summary) for image `index`."""
        if index is None or not session.entries:
            return (
                gr.update(choices=[], value=None),
                [],
                gr.update(value=None),
                gr.update(choices=[], value=None),
                None,
                "No image yet: upload one or pick an example.",
            )
        choices = [
            (f"{k + 1}: {e.name} ({e.image.data.shape[0]} bands)", k)
            for k, e in enumerate(session.entries)
        ]
        preview = session.preview(index)
        entry = session.entries[index]
        return (
            gr.update(choices=choices, value=index),
            session.rows(index),
            gr.update(value=entry.image.sensor or NO_SENSOR),
            gr.update(choices=preview_modes(entry.image), value=entry.preview_mode),
            preview,
            session.summary(index),
        )

    # -------------------------------------------------------------- handlers
    @user_errors
    def upload(self, files: Sequence[str] | str | None, state: DemoSession | None):
        """Read uploaded files; a bad file is reported, the good ones are still added.

        Returns (state, *view, None): the last clears the upload field.
        """
        session = self.session(state)
        paths = [files] if isinstance(files, str) else list(files or [])
        if not paths:
            raise DemoError("no file received: choose a PNG, JPG, GeoTIFF or JP2 file")
        errors, index = [], None
        for path in paths:
            try:
                index = session.add_file(path)
            except DemoError as err:
                errors.append(str(err))
                logger.info("upload refused: %s", err)
            finally:
                discard_upload(path)  # read into memory (or refused): Gradio's copy can go
        if index is None:
            raise DemoError("; ".join(errors))
        for message in errors:
            gr.Warning(message)
        # The upload field is emptied: its files are read (and deleted), the images listed above.
        return (session, *self.view(session, index), None)

    @user_errors
    def add_example(self, evt: gr.SelectData, state: DemoSession | None):
        name = list(self.example_files())[evt.index]
        return self.add_example_by_name(name, state)

    def add_example_by_name(self, name: str, state: DemoSession | None):
        session = self.session(state)
        path = self.example_files()[name]
        index = session.add_file(path)
        return (session, *self.view(session, index))

    def example_files(self) -> dict[str, Path]:
        if self.examples_dir is None:
            return {}
        return {
            n: self.examples_dir / e.file
            for n, e in EXAMPLES.items()
            if (self.examples_dir / e.file).is_file()
        }

    @user_errors
    def select_image(self, index: int | None, state: DemoSession | None):
        session = self.session(state)
        return (session, *self.view(session, index))

    @user_errors
    def set_sensor(self, index: int | None, sensor: str | None, state: DemoSession | None):
        session = self.session(state)
        if index is None or sensor is None:
            return (session, *self.view(session, index))
        entry = session.entry(index)
        if (entry.image.sensor or NO_SENSOR) != sensor:
            session.set_sensor(index, sensor)
        return (session, *self.view(session, index))

    @user_errors
    def apply_table(
        self, index: int | None, rows: Any, sensor: str | None, state: DemoSession | None
    ):
        session = self.session(state)
        if index is None:
            raise DemoError("no image selected: upload an image or pick an example first")
        if hasattr(rows, "values"):  # a pandas DataFrame
            rows = rows.values.tolist()
        session.set_bands(index, rows, sensor)
        gr.Info("Band table applied.")
        return (session, *self.view(session, index))

    @user_errors
    def set_preview(self, index: int | None, mode: str | None, state: DemoSession | None):
        session = self.session(state)
        if index is None or not session.entries:
            return session, None
        return session, session.preview(index, mode)

    def chat(
        self,
        message: str,
        history: list[dict[str, Any]] | None,
        state: DemoSession | None,
        scene: bool | None = None,
        before_date: str | None = None,
        after_date: str | None = None,
        change: bool = False,
    ) -> Iterator[tuple[Any, ...]]:
        """Stream an answer: yields (history, textbox, overlay, files, note, summary, state).

        scene: the UI's whole-scene switch (None: the server's default); while a scene runs,
        its progress is streamed at the end of the answer. before_date / after_date: the
        before/after pair's date fields (empty: the files' own dates); change: the question
        compares the pair (the "What changed?" button), so the pair must be complete.

        A failed turn never raises: its reason (which file, what is wrong, the fix) becomes one
        message in the chat and the log, and the other panels keep what they showed (the question
        stays in its box, to ask again after the fix).
        """
        session = self.session(state)
        history = list(history or [])
        keep = gr.update()
        if not message or not message.strip():
            history.append({"role": "assistant", "content": f"{ERROR_MARK} Type a question first."})
            yield history, keep, keep, keep, keep, keep, session
            return
        if not session.entries and not change:
            # Without pixels the model would invent an image; say so and keep the question.
            history.append({"role": "user", "content": message})
            history.append(
                {
                    "role": "assistant",
                    "content": f"{ERROR_MARK} No image yet: upload an image or pick an example, "
                    "then ask again.",
                }
            )
            yield history, keep, keep, keep, keep, keep, session
            return
        history.append({"role": "user", "content": message})
        history.append({"role": "assistant", "content": ""})
        try:
            dates = [before_date, after_date]
            for text in session.stream(message, scene=scene, dates=dates, change=change):
                history[-1] = {"role": "assistant", "content": text}
                yield history, "", keep, keep, keep, keep, session
            result = session.result
            assert result is not None
        except Exception as err:  # every failure of a turn: one message, the panels untouched
            if isinstance(err, DemoError):
                reason = str(err)
                logger.warning("turn failed: %s", reason)
            else:
                reason = f"the answer failed ({type(err).__name__}: {err}); please try again"
                logger.error("turn failed", exc_info=err)
            failure = {"role": "assistant", "content": f"{ERROR_MARK} {reason}"}
            if history[-1]["content"]:
                history.append(failure)
            else:
                history[-1] = failure
            yield history, keep, keep, keep, keep, keep, session
            return
        files = [str(f) for f in result.files] or None
        summary = session.summary(result.image_index) if result.image_index is not None else keep
        yield history, "", result.overlay, files, result.note, summary, session

    def compare(
        self,
        history: list[dict[str, Any]] | None,
        state: DemoSession | None,
        scene: bool | None,
        before_date: str | None,
        after_date: str | None,
    ) -> Iterator[tuple[Any, ...]]:
        """The "What changed?" button: `chat` with `CHANGE_QUESTION` about the before/after pair
        (the question box keeps what the user typed)."""
        for history_, _, *rest in self.chat(
            CHANGE_QUESTION, history, state, scene, before_date, after_date, change=True
        ):
            yield history_, gr.update(), *rest

    @user_errors
    def upload_pair(self, slot: str, file: str | None, state: DemoSession | None):
        """Read an upload into the pair's ``slot`` ("before" / "after").

        Returns (state, *view, pair view, None): the last clears the upload field."""
        session = self.session(state)
        if not file:
            raise DemoError(f"no file received for the {slot} image: choose a GeoTIFF or photo")
        try:
            index = upload_to_slot(session, slot, file)
        finally:
            discard_upload(file)  # read into memory (or refused): Gradio's copy can go
        return (session, *self.view(session, index), self.pair_view(session), None)

    def upload_before(self, file: str | None, state: DemoSession | None):
        return self.upload_pair("before", file, state)

    def upload_after(self, file: str | None, state: DemoSession | None):
        return self.upload_pair("after", file, state)

    def pair_view(self, state: DemoSession | None) -> Any:
        """The swipe view's (before, after) images, the after one with the last change mask
        drawn on it; unchanged (gr.update()) until both images are uploaded."""
        try:
            images = pair_images(state) if state is not None else None
        except DemoError as err:  # a preview that cannot be drawn (the band table says why)
            logger.info("no swipe view: %s", err)
            images = None
        return images if images is not None else gr.update()

    @user_errors
    def reset(self, state: DemoSession | None):
        session = self.session(state)
        session.reset()
        return (session, [], None, None, "", *self.view(session, None))
