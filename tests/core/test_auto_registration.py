"""`import skyeye` is light, and SkyEye is in transformers' Auto classes whatever the import order.

Each case runs in a fresh interpreter: what is imported, and in which order, is the behaviour.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "sentinel2_berlin_l1c.tif"


def _run(code: str) -> str:
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_reading_a_raster_imports_neither_torch_nor_transformers() -> None:
    out = _run(
        "import json, sys\n"
        "import skyeye\n"
        "from skyeye.io.raster import read_raster\n"
        f"image = read_raster({str(EXAMPLE)!r}, max_size=64)\n"
        "print(json.dumps({'bands': image.data.shape[0],"
        " 'loaded': sorted(m for m in ('torch', 'transformers') if m in sys.modules)}))\n"
    )
    result = json.loads(out.strip().splitlines()[-1])
    assert result["bands"] == 13
    assert result["loaded"] == []


@pytest.mark.parametrize(
    "imports",
    [
        # the README's order: skyeye first, then transformers' Auto classes
        "import skyeye\nfrom transformers import AutoModelForImageTextToText",
        # transformers' Auto classes were loaded before skyeye
        "from transformers import AutoConfig\nimport skyeye",
        # a skyeye module that imports transformers while it is itself being imported
        "from skyeye.chat.session import ChatSession",
        "from skyeye.modeling.model import SkyEyeForConditionalGeneration",
    ],
    ids=["skyeye-then-auto", "auto-then-skyeye", "chat-session", "model-module"],
)
def test_skyeye_is_in_the_auto_classes_whatever_the_import_order(imports: str) -> None:
    _run(
        imports
        + "\n"
        + "from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor\n"
        + "from transformers.models.auto.processing_auto import PROCESSOR_MAPPING\n"
        + "from skyeye.modeling.configuration import SkyEyeConfig\n"
        + "from skyeye.modeling.model import SkyEyeForConditionalGeneration\n"
        + "from skyeye.processing.processor import SkyEyeProcessor\n"
        + "assert type(AutoConfig.for_model('skyeye')) is SkyEyeConfig\n"
        + "mapping = AutoModelForImageTextToText._model_mapping\n"
        + "assert mapping[SkyEyeConfig] is SkyEyeForConditionalGeneration\n"
        + "assert PROCESSOR_MAPPING[SkyEyeConfig] is SkyEyeProcessor\n"
    )
