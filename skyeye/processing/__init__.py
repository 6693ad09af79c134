"""Model inputs: `RasterImage` + conversation -> `pixel_values`, `wavelengths`, token ids, labels.

Owns the image processor (resize, value scaling, normalisation) and the processor (chat template,
`<image>` expansion, training labels). May import `skyeye.io` and the layer-0 modules.
"""
