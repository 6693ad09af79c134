# The two commands a newcomer needs:  `make chat`  and  `make test`.
PY := .venv/bin/python
IMAGE ?= examples/sentinel2_berlin_l1c.tif
PROMPT ?=

.PHONY: setup chat demo finetune-tiny test test-slow test-browser test-qgis qgis-plugin lint

setup:
	@bash scripts/setup.sh

# Chat in the terminal about a real Sentinel-2 scene with the embedded model.
# One-shot: make chat PROMPT="Is there water in this image?"
chat: setup
	$(PY) -m skyeye.chat --model skyeye-tiny --image $(IMAGE) $(if $(PROMPT),--prompt "$(PROMPT)",)

# The web demo on http://127.0.0.1:7860 (see docs/demo.md).
demo: setup
	$(PY) -m demo

# Fine-tune a tiny random model on the fixture data (CPU, about a minute; see docs/finetuning.md).
finetune-tiny: setup
	$(PY) -m finetune.train --recipe finetune/recipes/tiny-test.yaml

# The fast offline suite (CPU, a few minutes).
test: setup
	$(PY) -m pytest -q

# Tests that need the real embedded model or take longer.
test-slow: setup
	$(PY) -m pytest -q -m slow

# A real headless Chromium drives the demo (installs Debian's chromium + chromium-driver if missing).
test-browser: setup
	bash scripts/setup_browser.sh
	$(PY) -m pytest -q -m browser tests/demo

# The QGIS plugin in Debian's real QGIS (offscreen) against a live skyeye.serve with skyeye-tiny
# (installs python3-qgis, python3-pytest and xvfb if missing; see docs/qgis.md).
test-qgis: setup
	bash scripts/setup_qgis.sh
	QT_QPA_PLATFORM=offscreen /usr/bin/python3 -m pytest -q -c tests/qgis/pytest.ini tests/qgis

# The QGIS plugin as the zip QGIS's "Install from ZIP" takes: dist/skyeye-qgis-plugin.zip.
qgis-plugin:
	$(PY) scripts/build_qgis_plugin.py

# ruff on everything; mypy on the library (settings in pyproject.toml [tool.mypy]).
lint: setup
	$(PY) -m ruff check skyeye instruct_data finetune demo tests bench
	$(PY) -m mypy skyeye
