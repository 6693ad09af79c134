"""`python -m skyeye.serve`: an OpenAI-compatible HTTP API (FastAPI + uvicorn) over a ChatSession."""

from skyeye.serve.app import create_app
from skyeye.serve.config import ServeConfig

__all__ = ["ServeConfig", "create_app"]
