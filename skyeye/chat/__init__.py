"""Conversations: `ChatSession` (multi-turn state, streaming, masks on each image's grid), the
terminal chat (`python -m skyeye.chat`) and the export of an answer's masks.

May import every layer below it (io, processing, modeling, grounding, render).
"""
