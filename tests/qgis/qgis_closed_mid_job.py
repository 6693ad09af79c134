"""A second QGIS (offscreen, same profile as the tests) that runs "Analyze whole scene" and prints
each progress step; the test kills it mid-job, as QGIS closed while a job runs.

Usage: qgis_closed_mid_job.py PROFILE_FOLDER SCENE
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, "/usr/share/qgis/python/plugins")
sys.path.insert(0, str(REPO / "qgis_plugin"))


def main(profile: str, scene: str) -> None:
    from qgis.core import QgsApplication, QgsProcessingFeedback

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False, profile)
    app.initQgis()
    from processing.core.Processing import Processing

    Processing.initialize()
    QgsApplication.authManager().setMasterPassword("test-master", True)
    import processing
    from skyeye.algorithms import SkyEyeProvider

    provider = SkyEyeProvider()  # kept referenced: the registry does not own it
    assert QgsApplication.processingRegistry().addProvider(provider)
    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda p: print(f"progress {p}", flush=True))
    processing.run(
        "skyeye:analyze_scene",
        {"INPUT": scene, "PROMPT": "Show me where the water is with a mask.", "WINDOW": 128,
         "OVERLAP": 0, "BATCH": 1, "OUTPUT": "memory:scene"},
        feedback=feedback,
    )  # fmt: skip
    print("finished", flush=True)  # the test kills this QGIS before


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
