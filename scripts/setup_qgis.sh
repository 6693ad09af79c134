#!/usr/bin/env bash
# Debian's QGIS for the plugin tests (make test-qgis): python3-qgis (QGIS >= 3.22 bindings for the
# system python3), its providers, pytest for that python3, and Xvfb for the screenshot script.
# Installs only what is missing; needs root (CI runs as root), or sudo.
set -euo pipefail
need=()
/usr/bin/python3 -c "import qgis.core" 2>/dev/null || need+=(python3-qgis qgis-providers)
/usr/bin/python3 -m pytest --version >/dev/null 2>&1 || need+=(python3-pytest)
command -v Xvfb >/dev/null 2>&1 || need+=(xvfb)
if [ ${#need[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${need[@]}"
fi
/usr/bin/python3 - <<'PY'
from qgis.core import Qgis
major, minor = (int(v) for v in Qgis.QGIS_VERSION.split(".")[:2])
assert (major, minor) >= (3, 22), f"QGIS {Qgis.QGIS_VERSION} is older than 3.22"
print(f"QGIS {Qgis.QGIS_VERSION}")
PY
