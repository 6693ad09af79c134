"""Logging set-up of the entry points (skyeye.logs)."""

from __future__ import annotations

import logging

from skyeye.logs import OnceFilter


def test_a_gdal_note_repeated_at_every_read_is_shown_once(caplog):
    logger = logging.getLogger("skyeye.test.gdal")
    logger.addFilter(OnceFilter())
    note = "TIFFReadDirectory:Sum of Photometric type-related color channels doesn't match."
    with caplog.at_level(logging.WARNING, logger="skyeye.test.gdal"):
        logger.warning("CPLE_AppDefined in 1985.tif: %s", note)
        logger.warning("CPLE_AppDefined in %s", note)  # the same note, another prefix
        logger.warning("CPLE_AppDefined in 2000.tif: %s", note)
        logger.warning("CPLE_NotSupported in 1985.tif: another note")
    assert len(caplog.records) == 2
    assert caplog.records[1].getMessage().endswith("another note")
