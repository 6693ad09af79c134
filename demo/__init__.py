"""SkyEye's Gradio demo: a thin UI over `skyeye.ChatSession` (`python -m demo`).

The UI logic lives in plain functions and classes (`demo.session.DemoSession`, `demo.bands`,
`skyeye.render.previews`, `skyeye.render.overlay`) so it is tested without a browser.
"""
