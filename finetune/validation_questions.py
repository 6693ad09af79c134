"""Kept for importers of the old name (tests/models/test_skyeye_tiny.py): the answer parsers are
`skyeye.grounding.parse`'s, the question kinds `skyeye.evaluation.tasks`. Import from there."""

from skyeye.grounding.parse import strip_grounding as strip_leading_mask

__all__ = ["strip_leading_mask"]
