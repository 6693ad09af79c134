"""The chat, scene-aware: a question about a large image answered on the whole scene.

The chat (`skyeye.chat`) answers on the image as read (at most `read_size` px a side). When that
answer draws a mask or states a share or an area and the image is larger than the scene window,
`follow` asks the same question of the whole scene at its own resolution (`skyeye.scene`) and
reports its answer and files; `terminal` is `python -m skyeye.chat` with this follow-up. A layer
above `scene` (which sits above `chat`), so the chat itself never imports the scene pipeline.
"""
