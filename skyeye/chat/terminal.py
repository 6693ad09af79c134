"""Terminal chat: `python -m skyeye.chat --image scene.tif [--prompt "..."]`.

Several `--image`s of one place (before/after) take `--date` per image (else the files' own
dates) and are put on the first image's grid before the model sees them (`skyeye.chat.multi_date`).

Interactive by default (streamed answers; `/image PATH [w1,...] [DATE]` adds an image as one
more `--image` does, `/reset`, `/quit`); with `--prompt` it
answers once, prints the answer and exits 0, so scripts can use it. The masks of an answer
(`[SEG]`) are saved under `--save-masks` (a PNG over the image, and a GeoTIFF for georeferenced
input); their paths go to stderr, so stdout stays the answer alone.

`run(args, follow_up=...)` lets a higher layer act on each answer (`skyeye.scenechat` analyses
a large image as a whole scene): `python -m skyeye.chat` is that scene-aware chat.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING

from skyeye.constants import DTYPE_NAMES
from skyeye.logs import configure_logging, silence_library_warnings

if TYPE_CHECKING:
    from skyeye.chat.session import ChatSession
    from skyeye.io.image import RasterImage

logger = logging.getLogger(__name__)

#: Called after each answer as f(session, prompt, turn, mask_dir); True when it reported the
#: answer's files itself (the thumbnail masks are then not saved).
FollowUp = Callable[["ChatSession", str, int, str], bool]

HELP = """commands:
  /image PATH [w1,w2,...] [YYYY-MM-DD]
                            attach an image (optional wavelengths in µm, one per band, and
                            date); images added before a question are compared as --image ones
  /reset                    forget images and history
  /quit                     leave (also Ctrl-D)
anything else is a question about the images"""


def parse_wavelengths(text: str | None) -> list[float] | None:
    """'0.665,0.56,0.49' -> [0.665, 0.56, 0.49] (µm)."""
    if text is None:
        return None
    try:
        values = [float(part) for part in text.replace(" ", "").split(",") if part]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"--wavelengths {text!r}: give comma-separated numbers in µm, e.g. 0.665,0.56,0.49"
        ) from None
    if not values:
        raise argparse.ArgumentTypeError("--wavelengths is empty")
    from skyeye.io.sensors import check_wavelengths

    try:
        check_wavelengths(values)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"--wavelengths {text!r}: {err}") from None
    return values


def parse_date(text: str) -> str:
    """'2018-05-01' -> the ISO date (argparse type of ``--date``)."""
    from skyeye.io.dates import parse_user_date

    try:
        return parse_user_date(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m skyeye.chat", description=__doc__)
    parser.add_argument(
        "--model", default="skyeye-tiny", help="bundled model, model folder or hub id"
    )
    parser.add_argument(
        "--image", action="append", default=[], help="image file or band folder (repeatable)"
    )
    parser.add_argument(
        "--wavelengths",
        action="append",
        default=[],
        type=parse_wavelengths,
        help="band wavelengths in µm, comma-separated; once for all images or once per --image",
    )
    parser.add_argument(
        "--date",
        action="append",
        default=[],
        type=parse_date,
        help="acquisition date of each --image (ISO, e.g. 2018-05-01), one per image in order; "
        "default: the file's metadata, STAC item or product name. Several images of one place "
        "are put on the first image's grid and named with their dates",
    )
    parser.add_argument(
        "--sensor",
        action="append",
        default=[],
        help="sensor of the images (e.g. sentinel-2, sentinel-1); once for all images or once "
        "per --image",
    )
    parser.add_argument("--prompt", default=None, help="ask once, print the answer and exit")
    parser.add_argument("--device", default="cpu", help="torch device, e.g. cpu or cuda")
    parser.add_argument(
        "--dtype",
        default="auto",
        choices=["auto", *DTYPE_NAMES],
        help="weights dtype; auto = bfloat16 on GPUs and on CPUs with AVX512-BF16/AMX, float32 on "
        "other CPUs (where bfloat16 is emulated)",
    )
    parser.add_argument("--max-new-tokens", type=int, default=200)
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="torch threads (default: torch's, one per core); 1 on a machine other jobs keep "
        "busy: there a forward of two threads ran ~10x slower (bench/RESULTS.md)",
    )
    parser.add_argument(
        "--cache-dir", default=None, help="where the converted embedded LLM is cached"
    )
    parser.add_argument(
        "--save-masks",
        default="skyeye_masks",
        metavar="DIR",
        help="folder for the masks of an answer (PNG over the image, GeoTIFF when georeferenced); "
        "'' to not save them",
    )
    parser.add_argument(
        "--raw",
        action="store_true",
        help="print answers in the model's own grammar (<p>water</p> [SEG] Yes. ...) instead of "
        "sentences",
    )
    parser.add_argument("--verbose", action="store_true", help="log progress to stderr")
    return parser


def _answer(session: ChatSession, prompt: str, raw: bool) -> Iterator[str]:
    """The answer's pieces: readable sentences (`skyeye.chat.readable`), or with ``raw`` the
    answer the conversation keeps, in the model's grammar, printed once measured."""
    from skyeye.chat.readable import readable_stream

    if not raw:
        yield from readable_stream(session, prompt)
        return
    for _ in session.stream(prompt):
        pass
    assert session.last_reply is not None
    yield session.last_reply.text


def _save_masks(session: ChatSession, out_dir: str, turn: int) -> None:
    reply = session.last_reply
    if not out_dir or reply is None or not reply.masks:
        return
    from skyeye.chat.mask_export import save_reply_masks

    for path in save_reply_masks(reply, session.images, out_dir, prefix=f"answer{turn}"):
        print(f"(mask saved: {path})", file=sys.stderr)


def _image_kwargs(args: argparse.Namespace, index: int) -> dict:
    """The reader's options for image ``index``: each of --sensor / --wavelengths given once
    for all images or once per image (`run` checks the counts)."""
    kwargs: dict = {}
    for key, given in (("sensor", args.sensor), ("wavelengths", args.wavelengths)):
        if given:
            kwargs[key] = given[0] if len(given) == 1 else given[index]
    return kwargs


def _is_wavelength(token: str) -> bool:
    """One wavelength in µm ("0.665"), not a date ("20200831", "2020-08-31")."""
    try:
        return float(token) < 100
    except ValueError:
        return False


def _added_image(
    session: ChatSession, parts: list[str], read_kwargs: dict
) -> tuple[RasterImage, str | None]:
    """`/image PATH [w1,w2,...] [YYYY-MM-DD]`: the image read with the command line's reader
    options (a --sensor / --wavelengths given once), checked as --image ones are; and its
    date, else None (the file's own)."""
    from skyeye.chat.loading import check_images
    from skyeye.io.dates import parse_user_date

    kwargs, date = dict(read_kwargs), None
    for token in parts[2:]:
        if "," in token or _is_wavelength(token):
            kwargs.pop("sensor", None)  # wavelengths given for this image replace the sensor's
            kwargs["wavelengths"] = parse_wavelengths(token)
        else:
            date = parse_user_date(token)
    image = check_images(
        [parts[1]],
        session.processor.image_processor,
        read_size=session.settings.read_size,
        read_kwargs=[kwargs],
    )[0]
    return image, date


def _after_answer(
    session: ChatSession, prompt: str, turn: int, mask_dir: str, follow_up: FollowUp | None
) -> None:
    if follow_up is not None and follow_up(session, prompt, turn, mask_dir):
        return
    _save_masks(session, mask_dir, turn)


def _interactive(
    session: ChatSession,
    mask_dir: str,
    follow_up: FollowUp | None = None,
    raw: bool = False,
    read_kwargs: dict | None = None,
) -> int:
    """The chat loop; read_kwargs: reader options for `/image` (the command line's --sensor or
    --wavelengths when given once for all images)."""
    import dataclasses

    from skyeye.chat.multi_date import attach_dated_image

    print(HELP)
    turn = 0
    while True:
        try:
            line = input("you> ").strip()
        except EOFError:
            print()
            return 0
        if not line:
            continue
        if line in ("/quit", "/exit"):
            return 0
        if line == "/help":
            print(HELP)
            continue
        if line == "/reset":
            session.reset()
            print("(conversation reset)")
            continue
        try:
            if line.startswith("/image"):
                parts = line.split()
                if len(parts) < 2:
                    print("usage: /image PATH [w1,w2,...] [YYYY-MM-DD]")
                    continue
                image, date = _added_image(session, parts, read_kwargs or {})
                if date is not None:
                    image = dataclasses.replace(image, datetime=date)
                prepared = attach_dated_image(session, image)
                if prepared.note:
                    print(f"({prepared.note})", file=sys.stderr)
                image = prepared.images[-1]
                print(f"(image added: {len(image.band_names)} bands {image.band_names})")
                continue
            pieces = _answer(session, line, raw)
            # Refusals (no image yet, prompt too long) come before the first piece: they print
            # as one error line, not after a dangling "skyeye> ".
            print("skyeye> " + next(pieces, ""), end="", flush=True)
            for piece in pieces:
                print(piece, end="", flush=True)
            print()
            turn += 1
            _after_answer(session, line, turn, mask_dir, follow_up)
        except (ValueError, OSError, argparse.ArgumentTypeError) as err:
            print(f"error: {err}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """The chat on the image as read (`--save-masks` masks only; no scene analysis)."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace, follow_up: FollowUp | None = None) -> int:
    """Load the model and images of `args` (from `build_parser`), then chat or answer once.

    follow_up: called after each answer (see `FollowUp`); its `ValueError`/`OSError` is one
    line on stderr (exit 2 in one-shot mode).
    """
    configure_logging(args.verbose)
    # Imported after the logging set-up: importing them already logs (bitsandbytes' kernels).
    from skyeye.bundled import resolve_model_folder
    from skyeye.chat.loading import chat_dtype, check_images
    from skyeye.chat.multi_date import prepare_dated_images
    from skyeye.chat.session import GenerationSettings, load_chat
    from skyeye.modeling.folder_check import check_model_folder
    from skyeye.processing.image_processor import SkyEyeImageProcessor

    for option, given in (("--wavelengths", args.wavelengths), ("--sensor", args.sensor)):
        if given and len(given) not in (1, len(args.image)):
            print(
                f"error: {len(given)} {option} for {len(args.image)} --image; give one for all "
                "images or one per image",
                file=sys.stderr,
            )
            return 2
    if args.date and len(args.date) != len(args.image):
        print(
            f"error: {len(args.date)} --date for {len(args.image)} --image; give one date per "
            "image, in the order of the images",
            file=sys.stderr,
        )
        return 2
    if args.prompt is not None and not args.image:
        # Refused before the slow model load: the session would refuse it (NoImageError).
        print("error: --prompt needs an image to ask about: add --image PATH", file=sys.stderr)
        return 2
    if args.threads is not None:
        import torch

        torch.set_num_threads(max(1, args.threads))
    dtype = chat_dtype(args.dtype, args.device)
    started = time.perf_counter()
    settings = GenerationSettings(max_new_tokens=args.max_new_tokens)
    try:
        # Check the model folder and every image (read, and mapped to wavelengths with the
        # checkpoint's own rules from preprocessor_config.json) before the slower model load,
        # so a bad file fails at once.
        folder = resolve_model_folder(args.model)
        check_model_folder(folder)
        image_processor = SkyEyeImageProcessor.from_pretrained(str(folder))
        images = check_images(
            args.image,
            image_processor,
            read_size=settings.read_size,
            read_kwargs=[_image_kwargs(args, index) for index in range(len(args.image))],
        )
        # Several images of one place: dated, in order, on the first image's grid (exit 2 when
        # they do not overlap); said when only part of them is compared.
        prepared = prepare_dated_images(images, args.date or None)
        if prepared.note:
            print(f"({prepared.note})", file=sys.stderr)
        images = prepared.images
        session = load_chat(
            folder, device=args.device, dtype=dtype, cache_dir=args.cache_dir, settings=settings
        )
        for image in images:
            session.add_image(image)
    except (ValueError, OSError, KeyError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    logger.info("model and images ready in %.1f s", time.perf_counter() - started)
    silence_library_warnings(args.verbose)  # libraries imported while loading add their filters
    if args.prompt is None:
        once = {
            key: given[0]
            for key, given in (("sensor", args.sensor), ("wavelengths", args.wavelengths))
            if given and len(given) == 1
        }
        return _interactive(session, args.save_masks, follow_up, raw=args.raw, read_kwargs=once)
    try:
        for piece in _answer(session, args.prompt, args.raw):
            print(piece, end="", flush=True)
        print()
        _after_answer(session, args.prompt, 1, args.save_masks, follow_up)
    except (ValueError, OSError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
