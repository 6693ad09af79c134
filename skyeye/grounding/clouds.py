"""Whether and how the spectral cloud rule applies to an image as the model reads it.

A change answer leaves out the pixels with cloud on either date. The cloud label rule
(`skyeye.grounding.label_rules.cloud_rule_mask`) tests reflectance, so it needs the factor that
turns the image's values into 0-1 reflectance; that factor follows from the value scaling the
image processor resolves for the image (its own "auto" rule, `SkyEyeImageProcessor.scaling_for`,
or a scene's `FixedScaling`):

* "reflectance_10000" (Sentinel-2 digital numbers): x 1e-4;
* "reflectance" (a float export already in 0-1): x 1;
* "sar_db", or a sensor whose bands are all radar: SAR sees through clouds, nothing to mask;
* "minmax" (unknown units: Landsat DN, an unknown sensor): no reflectance, the rule cannot apply;
* "uint8" (8-bit photos: NAIP, RGB): not calibrated reflectance, the rule does not apply either.
  Read as value / 255 it flagged 56.5 % of the clear NAIP 2009 tile of
  ``../shared/data/opengeos-naip-landsat`` as cloud and 17.5 % of the 2020 one (on the 2009
  tile 6,564 of its 7,981 regions are 4 px or fewer): the thresholds are reflectance, and an
  8-bit photo's brightness is stretched for display.

Without a blue, green or red band (Landsat given as 4 bands without blue) the rule cannot apply
either. `pair_clouds` gives the clouds of a change answer's dates when the rule reads all of
them; otherwise no cloud is masked and the answer says so. The mask decoder's own "cloud" and
"cloud shadow" are not used: they covered ~45 % of a clear Sentinel-2 scene and 20-35 % of clear
AirChange aerial pairs (the chat's AirChange change gIoU 0.092 with them, 0.281 without).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from skyeye.grounding.label_rules import cloud_rule_mask
from skyeye.io.band_roles import role_band_index
from skyeye.io.image import RasterImage
from skyeye.io.sensors import get_sensor, list_sensors

if TYPE_CHECKING:  # a processor is passed in: grounding does not import processing (one layer)
    from skyeye.processing.image_processor import FixedScaling, SkyEyeImageProcessor

__all__ = [
    "CLOUDS_BY_RULE",
    "CLOUDS_NOT_APPLICABLE",
    "CloudRule",
    "cloud_rule",
    "cloud_rule_for",
    "clouds_method",
    "pair_clouds",
]

#: How a change answer found its clouds (answer.json's ``cloud_method``).
CLOUDS_BY_RULE = "spectral test"
CLOUDS_NOT_APPLICABLE = "not applicable (SAR)"

#: Reflectance per unit of each value scaling the rule can read ("uint8" is not one: see above).
_REFLECTANCE_SCALE = {"reflectance_10000": 1e-4, "reflectance": 1.0}


@dataclass(frozen=True)
class CloudRule:
    """How the cloud rule reads one image. sar: radar, no clouds to mask; scale: reflectance =
    value x scale (None: the rule cannot apply, ``why`` says why)."""

    sar: bool
    scale: float | None
    why: str = ""

    @property
    def applies(self) -> bool:
        """Clouds are known without the decoder: by the rule, or none (SAR)."""
        return self.sar or self.scale is not None


def cloud_rule_for(
    scaling: str, sensor: str | None, wavelengths: Sequence[float | None] | None
) -> CloudRule:
    """How the cloud rule reads an image of ``sensor`` with bands at ``wavelengths`` (µm) whose
    values the processor scales with ``scaling`` (a ``VALUE_SCALINGS`` name, "auto" resolved):
    decided without the pixels, so a scene decides once for all its windows."""
    if scaling == "sar_db" or (
        sensor in list_sensors() and all(b.kind == "sar" for b in get_sensor(sensor).bands)
    ):
        return CloudRule(sar=True, scale=None)
    if scaling not in _REFLECTANCE_SCALE:
        return CloudRule(False, None, f"value scaling {scaling!r} gives no reflectance")
    for role in ("blue", "green", "red"):
        if role_band_index(wavelengths, role) is None:
            return CloudRule(False, None, f"no {role} band")
    return CloudRule(False, _REFLECTANCE_SCALE[scaling])


def cloud_rule(
    processor: SkyEyeImageProcessor, image: RasterImage, scaling: FixedScaling | None = None
) -> CloudRule:
    """How the cloud rule applies to ``image`` scaled as the processor scales it: with
    ``scaling`` (a scene's, for its windows) or else the image's own ("auto" resolved by
    `SkyEyeImageProcessor.scaling_for`, the processor's one rule)."""
    name = scaling.name if scaling is not None else processor.scaling_for(image.sensor, image.data)
    return cloud_rule_for(name, image.sensor, image.wavelengths)


def clouds_method(rules: Sequence[CloudRule]) -> str | None:
    """How the images of ``rules`` get their clouds without the decoder: `CLOUDS_BY_RULE`,
    `CLOUDS_NOT_APPLICABLE` (every image SAR), or None when the rule cannot read one of them
    (no cloud is masked then, for every image alike)."""
    if not all(r.applies for r in rules):
        return None
    return CLOUDS_NOT_APPLICABLE if all(r.sar for r in rules) else CLOUDS_BY_RULE


def pair_clouds(
    processor: SkyEyeImageProcessor,
    images: Sequence[RasterImage],
    scalings: Sequence[FixedScaling | None] | None = None,
) -> tuple[list[np.ndarray], str] | None:
    """Each image's cloud pixels (H, W) bool by the rule (all False on SAR) and `clouds_method`,
    or None where that is None."""
    scalings = list(scalings) if scalings is not None else [None] * len(images)
    rules = [cloud_rule(processor, im, s) for im, s in zip(images, scalings, strict=True)]
    method = clouds_method(rules)
    if method is None:
        return None
    masks = [
        np.zeros(im.data.shape[1:], bool) if r.sar else cloud_rule_mask(im, r.scale)[0]  # type: ignore[arg-type]
        for im, r in zip(images, rules, strict=True)
    ]
    return masks, method
