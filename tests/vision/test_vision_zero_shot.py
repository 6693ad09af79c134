"""Zero-shot scoring with a tiny DOFA-CLIP open_clip folder (SimpleTokenizer, offline)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from open_clip.tokenizer import SimpleTokenizer

from skyeye.modeling.vision import CheckpointKeyError
from skyeye.modeling.vision.zero_shot import ZeroShotClassifier

LABELS = ["a harbour with ships", "a dense forest", "flooded fields"]


def test_scores_shape_and_maths(tmp_path, builders) -> None:
    state = builders.write_dofa_clip_folder(tmp_path / "clip", seed=1)
    model = ZeroShotClassifier.from_pretrained(tmp_path / "clip")
    assert isinstance(model.tokenizer, SimpleTokenizer)
    x, waves = torch.randn(2, 3, 16, 16), torch.tensor([0.665, 0.56, 0.49])
    with torch.no_grad():
        probs = model.scores(x, waves, LABELS)
        # Independent recomputation from the stored weights: open_clip text tower + SigLIP head.
        text = builders.build_text_tower()
        text.load_state_dict({k[5:]: v for k, v in state.items() if k.startswith("text.")})
        tokens = SimpleTokenizer(context_length=16, clean="canonicalize")(LABELS)
        txt = F.normalize(text(tokens), dim=-1)
        img = F.normalize(model.visual.pooled(x, waves), dim=-1)
        expected = torch.sigmoid(img @ txt.T * state["logit_scale"].exp() + state["logit_bias"])
    assert probs.shape == (2, 3)
    torch.testing.assert_close(probs, expected)
    assert ((probs > 0) & (probs < 1)).all()


def test_text_keys_load_strictly(tmp_path, builders) -> None:
    builders.write_dofa_clip_folder(tmp_path / "clip", drop_keys=("text.ln_final.bias",))
    with pytest.raises(CheckpointKeyError, match="text.ln_final.bias"):
        ZeroShotClassifier.from_pretrained(tmp_path / "clip")


def test_tokenizer_passed_in_is_used(tmp_path, builders) -> None:
    builders.write_dofa_clip_folder(
        tmp_path / "clip", text_cfg_overrides={"hf_tokenizer_name": "timm/ViT-B-16-SigLIP"}
    )
    calls = []

    def tokenizer(texts, context_length):
        calls.append(list(texts))
        return SimpleTokenizer(context_length=context_length)(texts)

    model = ZeroShotClassifier.from_pretrained(tmp_path / "clip", tokenizer=tokenizer)
    with torch.no_grad():
        out = model.scores(
            torch.randn(1, 4, 16, 16), torch.tensor([0.48, 0.56, 0.64, 0.81]), LABELS
        )
    assert out.shape == (1, 3) and calls == [LABELS]


def test_hf_tokenizer_files_in_folder_work_offline(tmp_path, builders) -> None:
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, "a": 3, "harbour": 4, "forest": 5}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>")
    folder = tmp_path / "clip"
    builders.write_dofa_clip_folder(
        folder, text_cfg_overrides={"hf_tokenizer_name": "timm/ViT-B-16-SigLIP"}
    )
    fast.save_pretrained(folder)
    model = ZeroShotClassifier.from_pretrained(folder)
    ids = model.tokenizer(["a harbour"], context_length=16)
    assert ids.shape == (1, 16) and ids[0, :2].tolist() == [3, 4]
