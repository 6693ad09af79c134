"""`skyeye.serve` with the real embedded model: the mask of the river comes back as GeoJSON."""

from __future__ import annotations

import openai
import pytest
from serve_testing import live_server
from test_serve import S2, _check_mask_geojson, data_url, question


@pytest.mark.slow
def test_embedded_model_segments_the_river_streamed_and_not():
    from skyeye.serve import ServeConfig, create_app

    with live_server(create_app(ServeConfig(model="skyeye-tiny"))) as url:
        client = openai.OpenAI(base_url=url, api_key="unused", max_retries=0, timeout=300)
        messages = question("Please segment the river.", data_url(S2))
        plain = client.chat.completions.create(
            model="skyeye-tiny", messages=messages, max_tokens=20
        )
        # content reads as a sentence naming the mask; the model's grammar is the extension's raw
        extension = plain.choices[0].message.model_extra["skyeye"]
        assert "mask 1" in plain.choices[0].message.content
        assert "[SEG]" in extension["raw"]
        _check_mask_geojson(extension)
        chunks = list(
            client.chat.completions.create(
                model="skyeye-tiny", messages=messages, max_tokens=20, stream=True
            )
        )
        text = "".join(c.choices[0].delta.content or "" for c in chunks)
        assert text.strip() == plain.choices[0].message.content
        _check_mask_geojson(chunks[-1].choices[0].delta.model_extra["skyeye"])
