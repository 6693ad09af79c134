"""Logging set-up shared by the command-line entry points (chat, demo, evaluate)."""

from __future__ import annotations

import logging
import warnings

import transformers


def configure_logging(verbose: bool) -> None:
    """INFO logs with `verbose`; otherwise only SkyEye's own warnings and errors.

    Without `verbose`, the libraries' progress bars, deprecation notices and optional-kernel
    notices (transformers, bitsandbytes) are silenced: a one-shot answer prints only the answer.
    """
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s")
    if verbose:
        return
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    logging.getLogger("bitsandbytes").setLevel(logging.ERROR)
    silence_library_warnings(verbose)


def silence_library_warnings(verbose: bool) -> None:
    """Hide the libraries' deprecation notices unless `verbose` (call again after imports that
    install warning filters of their own)."""
    if verbose:
        return
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="transformers")
