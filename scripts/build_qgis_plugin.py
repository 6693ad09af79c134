"""Build the QGIS plugin zip (``make qgis-plugin``): ``dist/skyeye-qgis-plugin.zip`` holding the
``skyeye/`` plugin folder, the layout QGIS's "Install from ZIP" takes (no caches)."""

from __future__ import annotations

import sys
import zipfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PLUGIN = REPO / "qgis_plugin" / "skyeye"


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    target = Path(args[0]) if args else REPO / "dist" / "skyeye-qgis-plugin.zip"
    target.parent.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(REPO))
    from skyeye.atomic import atomic_path

    files = sorted(p for p in PLUGIN.rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    if not (PLUGIN / "metadata.txt").is_file():
        print(f"error: {PLUGIN}/metadata.txt is missing", file=sys.stderr)
        return 2
    with atomic_path(target) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as z:
        for path in files:
            z.write(path, Path("skyeye") / path.relative_to(PLUGIN))
    print(f"{target} ({len(files)} files): QGIS > Plugins > Manage and Install > Install from ZIP")
    return 0


if __name__ == "__main__":
    sys.exit(main())
