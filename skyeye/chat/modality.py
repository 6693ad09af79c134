"""Questions about the image itself (sensor, SAR or optical, bands) answered from the reader.

"What sensor took this image?" is not a question about what the pixels show: the reader knows
it (`RasterImage.sensor`, the band names, the wavelengths, the polarisations). A 135M LLM guesses
("Sentinel-2" for a Sentinel-1 scene); these rules state what is known, or that it is not known.
With lettered options (`skyeye.grounding.options`), the option naming the known fact is chosen;
when none does, a plain sentence says so.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from skyeye.grounding.options import MultipleChoice, format_choice
from skyeye.io.image import RasterImage

__all__ = ["ImageFacts", "image_facts", "modality_answer"]

_ASKS_SENSOR = re.compile(
    r"\b(what|which)\s+(sensor|satellite|instrument|platform|mission)\b|"
    r"\b(sensor|satellite)\s+(took|acquired|captured|recorded|is\s+this)\b|"
    r"\bwhich\s+(sensor|satellite)\b|\btaken\s+by\s+(which|what)\b",
    re.IGNORECASE,
)
_ASKS_KIND = re.compile(
    r"\b(sar|radar)\s+or\s+(an\s+)?optical\b|\boptical\s+or\s+(a\s+)?(sar|radar)\b|"
    r"\b(what|which)\s+(kind|type)\s+of\s+(image|imagery|data|sensor)\b|\bmodality\b|"
    r"\bis\s+this\s+(an?\s+)?(sar|radar|optical|multispectral)\b",
    re.IGNORECASE,
)
_ASKS_BANDS = re.compile(
    r"\bhow\s+many\s+(spectral\s+)?(bands|channels)\b|\bnumber\s+of\s+(spectral\s+)?(bands|channels)\b|"
    r"\bwhich\s+(spectral\s+)?(bands|channels|wavelengths)\b|\bwhat\s+(bands|wavelengths)\b",
    re.IGNORECASE,
)
_ASKS_POLARISATION = re.compile(r"\bpolari[sz]ations?\b", re.IGNORECASE)
_SAR_NAMES = {"VV", "VH", "HH", "HV"}
_SENSOR_WORDS = {
    "sentinel-1": ("sentinel-1", "sentinel 1", "s1"),
    "sentinel-2": ("sentinel-2", "sentinel 2", "s2", "msi"),
    "landsat-8": ("landsat 8", "landsat-8", "oli"),
    "landsat-9": ("landsat 9", "landsat-9"),
    "naip": ("naip",),
}


@dataclass(frozen=True)
class ImageFacts:
    """What the reader knows: the sensor (None when not stated), SAR or optical, bands."""

    sensor: str | None
    kind: str  # "SAR" | "multispectral" | "optical"
    bands: tuple[str, ...]
    wavelengths: tuple[float, ...]
    polarisations: tuple[str, ...]


def image_facts(image: RasterImage) -> ImageFacts:
    names = tuple(str(b) for b in image.band_names)
    polar = tuple(n.upper() for n in names if n.upper() in _SAR_NAMES)
    sar = bool(polar) or (image.sensor or "").lower() == "sentinel-1"
    waves = tuple(float(w) for w in image.wavelengths or () if w is not None)
    kind = "SAR" if sar else ("multispectral" if len(names) > 4 else "optical")
    return ImageFacts(image.sensor, kind, names, waves, polar)


def _kind_sentence(f: ImageFacts) -> str:
    if f.kind == "SAR":
        pol = f" ({' and '.join(f.polarisations)} polarisation)" if f.polarisations else ""
        return f"It is a SAR (radar) image{pol}, not an optical one."
    kind = "an optical" if f.kind == "optical" else "an optical (multispectral)"
    return f"It is {kind} image with {len(f.bands)} bands, not SAR."


def _sensor_sentence(f: ImageFacts) -> str:
    if f.sensor:
        return f"The image is from {f.sensor} (as its file states). {_kind_sentence(f)}"
    return f"The file does not name its sensor, so I will not guess one. {_kind_sentence(f)}"


def _bands_sentence(f: ImageFacts) -> str:
    if f.kind == "SAR":
        names = ", ".join(f.bands)
        return f"It has {len(f.bands)} bands: {names} (SAR polarisations, no wavelengths)."
    waves = (
        " at " + ", ".join(f"{w:g}" for w in f.wavelengths) + " µm"
        if len(f.wavelengths) == len(f.bands)
        else ""
    )
    return f"It has {len(f.bands)} bands: {', '.join(f.bands)}{waves}."


def _matches(option: str, f: ImageFacts, asks: str) -> bool:
    text = option.lower()
    if asks == "bands":
        return bool(re.search(rf"(?<!\d){len(f.bands)}(?!\d)", text))
    if asks == "sensor":
        if f.sensor and any(w in text for w in _SENSOR_WORDS.get(f.sensor, (f.sensor,))):
            return True
        if f.sensor:
            return False
    sar_words = ("sar", "radar", "synthetic aperture")
    says_sar = any(re.search(rf"\b{w}\b", text) for w in sar_words)
    says_optical = any(w in text for w in ("optical", "multispectral", "rgb", "visible"))
    return says_sar and not says_optical if f.kind == "SAR" else says_optical and not says_sar


def modality_answer(
    question: str, images: list[RasterImage], choice: MultipleChoice | None = None
) -> str | None:
    """The answer to a question about the latest image's sensor, kind or bands, from what the
    reader knows; None when ``question`` asks none of these (or there is no image)."""
    if not images:
        return None
    stem = choice.stem if choice is not None else question
    if _ASKS_BANDS.search(stem):
        asks = "bands"
    elif _ASKS_POLARISATION.search(stem):
        asks = "polarisation"
    elif _ASKS_SENSOR.search(stem):
        asks = "sensor"
    elif _ASKS_KIND.search(stem):
        asks = "kind"
    else:
        return None
    facts = image_facts(images[-1])
    if choice is not None:
        matching = [o for o in choice.options if _matches(o.text, facts, asks)]
        if len(matching) == 1:
            return format_choice(matching[0])
        known = _bands_sentence(facts) if asks == "bands" else _sensor_sentence(facts)
        return f"None of the options can be told to match what the file says. {known}"
    if asks == "bands":
        return _bands_sentence(facts)
    if asks == "polarisation":
        if facts.kind != "SAR":
            return f"It is optical: it has no radar polarisations. {_bands_sentence(facts)}"
        return f"It has {' and '.join(facts.polarisations)} polarisation."
    if asks == "sensor":
        return _sensor_sentence(facts)
    return _kind_sentence(facts)
