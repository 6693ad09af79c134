"""`python -m skyeye.chat`: the terminal chat, with large images analysed as whole scenes.

The options of `skyeye.chat.terminal` plus the scene's: after an answer that draws a mask or
states a share or an area about an image larger than `--scene-window`, the same question is asked
of the whole scene at its own resolution (`skyeye.scenechat.follow`). Its answer follows the
chat's on stdout, as a line of its own; its files (mask COG on the scene's grid, GeoJSON,
GeoPackage, preview, answer.json) go under `--save-masks` and their paths to stderr, with the
progress bar. `--no-scene` keeps the answer on the image as read (masks saved as PNG/GeoTIFF).
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from collections.abc import Sequence
from typing import TYPE_CHECKING

from skyeye.chat import terminal as chat_terminal

if TYPE_CHECKING:
    from skyeye.chat.session import ChatSession
    from skyeye.scenechat.follow import SceneOptions

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    """The chat's parser with the scene options."""
    from skyeye.scene.pipeline import DEFAULT_BATCH, DEFAULT_OVERLAP, DEFAULT_WINDOW

    parser = chat_terminal.build_parser()
    parser.description = __doc__
    group = parser.add_argument_group("whole scenes")
    group.add_argument(
        "--no-scene",
        action="store_true",
        help="never analyse a large image as a whole scene: answer on the image as read",
    )
    group.add_argument(
        "--scene-window",
        type=int,
        default=DEFAULT_WINDOW,
        metavar="PX",
        help="window side; an image larger than this is analysed as a scene (default %(default)s)",
    )
    group.add_argument(
        "--scene-overlap",
        type=int,
        default=DEFAULT_OVERLAP,
        metavar="PX",
        help="overlap of neighbouring windows (default %(default)s)",
    )
    group.add_argument(
        "--scene-batch",
        type=int,
        default=DEFAULT_BATCH,
        metavar="N",
        help="windows per model call (default %(default)s)",
    )
    group.add_argument(
        "--scene-gsd",
        type=float,
        default=None,
        metavar="METRES",
        help="output pixel size of the scene (default: native)",
    )
    return parser


class SceneFollowUp:
    """After each answer: analyse its image as a whole scene when `follow.scene_image_index` says
    so; prints the scene's answer (stdout) and files (stderr)."""

    def __init__(self, options: SceneOptions, progress: bool = True) -> None:
        self.options = options
        self.progress = progress

    def __call__(self, session: ChatSession, prompt: str, turn: int, mask_dir: str) -> bool:
        from skyeye.scenechat.follow import (
            record_scene_answer,
            run_scene,
            scene_files,
            scene_folder,
            scene_image_index,
        )

        reply = session.last_reply
        index = (
            None if reply is None else scene_image_index(reply, session.images, self.options.window)
        )
        if index is None:
            return False
        image = session.images[index]
        if image.path is None:
            return False
        height, width = image.source_shape or image.data.shape[1:]
        print(
            f"(the image is {width} x {height} px, larger than the {self.options.window}-px "
            "window: asking the whole scene at its own resolution; --no-scene to skip)",
            file=sys.stderr,
            flush=True,
        )
        with tempfile.TemporaryDirectory(prefix="skyeye-scene-") as scratch:
            out = scene_folder(mask_dir or scratch, image.path, prompt, self.options)
            result = run_scene(
                session, image, image.path, prompt, out, self.options, progress=self.progress
            )
            print(record_scene_answer(session, result), flush=True)
            if mask_dir:
                for path in scene_files(result):
                    print(f"(scene file: {path})", file=sys.stderr)
        return True


def _check(args: argparse.Namespace) -> str | None:
    if args.scene_window < 1:
        return f"--scene-window must be a positive number of pixels, got {args.scene_window}"
    if not 0 <= args.scene_overlap < args.scene_window:
        return (
            f"--scene-overlap must be in [0, --scene-window), got {args.scene_overlap} for a "
            f"{args.scene_window}-px window"
        )
    if args.scene_batch < 1:
        return f"--scene-batch must be at least 1, got {args.scene_batch}"
    if args.scene_gsd is not None and args.scene_gsd <= 0:
        return f"--scene-gsd must be a positive pixel size, got {args.scene_gsd}"
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    problem = _check(args)
    if problem is not None:
        print(f"error: {problem}", file=sys.stderr)
        return 2
    follow_up = None
    if not args.no_scene:
        from skyeye.scenechat.follow import SceneOptions

        options = SceneOptions(
            window=args.scene_window,
            overlap=args.scene_overlap,
            batch=args.scene_batch,
            gsd=args.scene_gsd,
        )
        follow_up = SceneFollowUp(options)
    return chat_terminal.run(args, follow_up)


if __name__ == "__main__":
    sys.exit(main())
