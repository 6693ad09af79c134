"""Pictures for people: display composites of any band set (`previews`) and boxes / masks drawn
over them with their phrases (`overlay`). May import io, grounding and the layer-0 modules.
"""
