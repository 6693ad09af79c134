"""The Hugging Face hub: model cards (`card`) and uploads (`push`); `python -m skyeye.hub`.

May import every layer below it.
"""
