"""The ``[SEG]`` mask decoders: the hidden state of each ``[SEG]`` token -> a mask over the image.

- `registry`: ``MASK_DECODERS`` (name -> class), `get_mask_decoder`, `list_mask_decoders`, and
  the `MaskDecoder` protocol a decoder follows;
- `light`: the light decoder on the tower's patch grid ("light", `SkyEyeMaskHead`);
- `hires`: the light mask refined on the image's own pixels ("hires", `HiResMaskHead`);
- `change`: the Siamese change decoder over two dates ("change" in ``CHANGE_DECODERS``,
  `ChangeMaskHead`; the model's ``change_head`` when ``config.mask_change`` is set);
- `spectral_indices`: the NDWI / MNDWI / NDVI / NDBI features the "hires" decoder reads;
- `losses`: `mask_losses` (BCE + dice), used by the model and the mask training stage.

The model holds its decoder as ``mask_head``: state-dict keys (``mask_head.*``) and saved
folders do not depend on where these modules live. How masks are decoded from a running
generation is `skyeye.modeling.generation_hooks`.
"""

from skyeye.modeling.mask_decoders.losses import mask_losses
from skyeye.modeling.mask_decoders.registry import (
    CHANGE_DECODERS,
    MASK_DECODERS,
    ChangeDecoder,
    MaskDecoder,
    get_change_decoder,
    get_mask_decoder,
    list_mask_decoders,
)

__all__ = [
    "CHANGE_DECODERS",
    "MASK_DECODERS",
    "ChangeDecoder",
    "MaskDecoder",
    "get_change_decoder",
    "get_mask_decoder",
    "list_mask_decoders",
    "mask_losses",
]
