"""Evaluation: metrics (`metrics`, `caption_metrics`), evaluation samples (`samples`), scoring,
the runner that asks through `ChatSession`, the JSON report and the CLI (`python -m
skyeye.evaluate`). May import chat and every layer below it.
"""
