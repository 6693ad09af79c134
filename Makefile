# The two commands a newcomer needs:  `make chat`  and  `make test`.
PY := .venv/bin/python
IMAGE ?= examples/sentinel2_berlin_l1c.tif
PROMPT ?=

.PHONY: setup chat test test-slow lint

setup:
	@bash scripts/setup.sh

# Chat in the terminal about a real Sentinel-2 scene with the embedded model.
# One-shot: make chat PROMPT="Is there water in this image?"
chat: setup
	$(PY) -m skyeye.chat --model skyeye-tiny --image $(IMAGE) $(if $(PROMPT),--prompt "$(PROMPT)",)

# The fast offline suite (CPU, a few minutes).
test: setup
	$(PY) -m pytest -q

# Tests that need the real embedded model or take longer.
test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(PY) -m ruff check skyeye instruct_data finetune demo tests
