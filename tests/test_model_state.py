"""Every helper that takes a model leaves it as it found it, after success and after an error (issue 30).

Compared before and after each call: the state_dict, every sub-module (name, type and identity),
each sub-module's train/eval flag, its forward, forward-pre and backward hooks, torch's global
module hooks, and each parameter's requires_grad flag and gradient. The models start in a mixed
state (one sub-module in the other mode, one layer frozen), so a helper that calls ``model.eval()``
or ``model.train(flag)`` on the whole model is caught.

Not here, because changing the model is their job: ``saliency.reinitialise`` and
``cam.recalibrate_batchnorm`` (the randomisation cascade calls them on its own copy), and
``text_classifier.train_sentiment_classifier``, which builds the classifier around the given
encoder and freezes it (documented: "The encoder stays frozen").
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.modules.module as torch_module

import toys as T
from xai_lesson import cam, patching, perturbation, probing, saliency, sanity, tracing
from xai_lesson.models import ImageClassifier

HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks")
GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                "_global_backward_pre_hooks")


def snapshot(model):
    modules = list(model.named_modules())
    return {
        "modules": [(name, type(m), id(m)) for name, m in modules],
        "training": [(name, m.training) for name, m in modules],
        "hooks": [(name, kind, tuple(getattr(m, kind, {}))) for name, m in modules for kind in HOOKS],
        "global hooks": [tuple(getattr(torch_module, kind)) for kind in GLOBAL_HOOKS],
        "requires_grad": [(name, p.requires_grad) for name, p in model.named_parameters()],
        "grad": [(name, None if p.grad is None else p.grad.clone()) for name, p in model.named_parameters()],
        "state_dict": {k: v.detach().clone() for k, v in model.state_dict().items()},
    }


def assert_same(before, after):
    for key in ("modules", "training", "hooks", "global hooks", "requires_grad"):
        assert before[key] == after[key], f"the helper changed the model's {key}"
    for (name, a), (_, b) in zip(before["grad"], after["grad"]):
        assert (a is None and b is None) or (a is not None and b is not None and torch.equal(a, b)), \
            f"the helper changed the gradient of {name}"
    assert before["state_dict"].keys() == after["state_dict"].keys()
    for key, value in before["state_dict"].items():
        assert torch.equal(value, after["state_dict"][key]), f"the helper changed {key}"


def cnn():
    """SmallCNN in training mode (it has no dropout or batch norm, so that changes nothing), with
    its last convolution in eval mode and its classifier frozen."""
    model = copy.deepcopy(T.cnn()).train()
    model.last_conv.eval()
    model.classifier.requires_grad_(False)
    return model


def lm(architecture="llama"):
    model = copy.deepcopy(T.lm(architecture)).eval()
    model(input_ids=torch.tensor([[1, 2, 3]]), output_hidden_states=True)  # transformers adds its hooks once
    model.lm_head.train()
    return model


def classifier():
    model = copy.deepcopy(T.classifier())
    model(input_ids=torch.tensor([[101, 2204, 102]]))
    model.encoder.embeddings.train()
    return model


def encoder():
    model = copy.deepcopy(T.encoder())
    model(input_ids=torch.tensor([[101, 2204, 102]]), output_hidden_states=True)
    model.pooler.train()
    return model


x1, x2, tiny_images = T.images(1), T.images(2), torch.rand(2, 3, 2, 2)  # 2 x 2 pixels break the second pooling
cam_map = np.random.default_rng(0).random((32, 32))
STAGES = [("classifier", ("classifier",)), ("last conv", ("features.6",))]
PROMPT, SUBJECT = T.PROMPT, T.SUBJECT
QUICK = dict(noise=1.0, samples=1, tokens=[-1])


def _image_classifier(model):
    return ImageClassifier("toy", model, (0.5,) * 3, (0.5,) * 3, model.last_conv, ["a", "b"])


def _project(model, fail):
    with probing.project_layer_output(model, 1, np.eye(32)):
        model(input_ids=torch.tensor([[101, 2204, 102]]))
        if fail:
            raise RuntimeError("an error inside the block")


# (id, model factory, call(model), whether the call raises)
CASES = [
    ("input_gradients", cnn, lambda m: saliency.input_gradients(m, x1, 0), False),
    ("input_gradients target 5000", cnn, lambda m: saliency.input_gradients(m, x1, 5000), True),
    ("gradient_times_input", cnn, lambda m: saliency.gradient_times_input(m, x1, 1), False),
    ("gradient_times_input target 5000", cnn, lambda m: saliency.gradient_times_input(m, x1, 5000), True),
    ("smoothgrad", cnn, lambda m: saliency.smoothgrad(m, x1, 0, n_samples=2), False),
    ("smoothgrad target 5000", cnn, lambda m: saliency.smoothgrad(m, x1, 5000, n_samples=2), True),
    ("integrated_gradients", cnn, lambda m: saliency.integrated_gradients(m, x1, 0, steps=4), False),
    ("integrated_gradients target 5000", cnn, lambda m: saliency.integrated_gradients(m, x1, 5000, steps=4), True),
    ("completeness_curve", cnn, lambda m: saliency.completeness_curve(m, x1, 0, steps=(2, 4)), False),
    ("completeness_curve target 5000", cnn, lambda m: saliency.completeness_curve(m, x1, 5000, steps=(2, 4)), True),
    ("completeness", cnn, lambda m: saliency.completeness(m, x1, 0, torch.zeros_like(x1)), False),
    ("completeness target 5000", cnn, lambda m: saliency.completeness(m, x1, 5000, torch.zeros_like(x1)), True),
    ("occlusion", cnn, lambda m: saliency.occlusion(m, x1, 0, window=16, stride=16), False),
    ("occlusion target 5000", cnn, lambda m: saliency.occlusion(m, x1, 5000, window=16, stride=16), True),
    ("logit_spread", cnn, lambda m: sanity.logit_spread(m, x2), False),
    ("logit_spread forward fails", cnn, lambda m: sanity.logit_spread(m, tiny_images), True),
    ("randomisation_cascade", cnn, lambda m: list(sanity.randomisation_cascade(m, x2, STAGES)), False),
    ("randomisation_cascade unknown stage", cnn,
     lambda m: list(sanity.randomisation_cascade(m, x2, STAGES + [("stem", ("nope",))])), True),
    ("guided_backprop", cnn, lambda m: sanity.guided_backprop(m, x2, [0, 1]), False),
    ("guided_backprop target 5000", cnn, lambda m: sanity.guided_backprop(m, x2, 5000), True),
    ("guided_backprop forward fails", cnn, lambda m: sanity.guided_backprop(m, tiny_images, 0), True),
    ("count_hooks", cnn, cam.count_hooks, False),
    ("split_relu6", cnn, cam.split_relu6, False),
    ("activations_and_gradients", cnn, lambda m: cam.activations_and_gradients(m, m.last_conv, x1, 0), False),
    ("activations_and_gradients target 5000", cnn,
     lambda m: cam.activations_and_gradients(m, m.last_conv, x1, 5000), True),
    ("gradcam_feature_map", cnn, lambda m: cam.gradcam_feature_map(m, m.last_conv, x1, 1), False),
    ("gradcam", cnn, lambda m: cam.gradcam(m, m.last_conv, x1, 0), False),
    ("gradcam target 5000", cnn, lambda m: cam.gradcam(m, m.last_conv, x1, 5000), True),
    ("deletion_scores", cnn, lambda m: cam.deletion_scores(m, x1, cam_map, 0), False),
    ("deletion_scores target 5000", cnn, lambda m: cam.deletion_scores(m, x1, cam_map, 5000), True),
    ("insertion_scores", cnn, lambda m: cam.insertion_scores(m, x1, cam_map, 1), False),
    ("insertion_scores target 5000", cnn, lambda m: cam.insertion_scores(m, x1, cam_map, 5000), True),
    ("top_k", cnn, lambda m: _image_classifier(m).top_k(x1 * 2 - 1, k=1), False),
    ("top_k k=0", cnn, lambda m: _image_classifier(m).top_k(x1 * 2 - 1, k=0), True),
    ("model_modules", lm, tracing.model_modules, False),
    ("embedding_noise_scale", lm, lambda m: tracing.embedding_noise_scale(m, T.lm_tokenizer(), ["Japan"]), False),
    ("restored_logits", lm, lambda m: tracing.restored_logits(
        m, tracing.model_modules(m)["layers"], torch.zeros(2, 3, 32), 1, 0, torch.zeros(1, 3, 32)), False),
    ("restored_logits layer 5", lm, lambda m: tracing.restored_logits(
        m, tracing.model_modules(m)["layers"], torch.zeros(2, 3, 32), 5, 0, torch.zeros(1, 3, 32)), True),
    ("causal_trace", lm, lambda m: tracing.causal_trace(m, T.lm_tokenizer(), PROMPT, SUBJECT, **QUICK), False),
    ("causal_trace straightforward", lm, lambda m: tracing.causal_trace(
        m, T.lm_tokenizer(), PROMPT, SUBJECT, method="straightforward", **QUICK), False),
    ("causal_trace layer 99", lm, lambda m: tracing.causal_trace(m, T.lm_tokenizer(), PROMPT, SUBJECT, layers=[99],
                                                                 **QUICK), True),
    ("restored_probability", lm, lambda m: tracing.restored_probability(
        m, T.lm_tokenizer(), PROMPT, SUBJECT, [(0, 1)], noise=1.0, samples=1), False),
    ("restored_probability token 99", lm, lambda m: tracing.restored_probability(
        m, T.lm_tokenizer(), PROMPT, SUBJECT, [(0, 99)], noise=1.0, samples=1), True),
    ("sites", lm, lambda m: patching.sites(m, "head"), False),
    ("run_with_cache", lm, lambda m: patching.run_with_cache(m, T.pair().clean_ids, patching.sites(m, "mlp")), False),
    ("activation_patching", lm, lambda m: patching.activation_patching(m, T.pair(), kind="attn"), False),
    ("activation_patching heads", lm, lambda m: patching.activation_patching(m, T.pair(), kind="head"), False),
    ("activation_patching position 99", lm, lambda m: patching.activation_patching(m, T.pair(), kind="head",
                                                                                   position=99), True),
    ("attribution_patching", lm, lambda m: patching.attribution_patching(m, T.pair(), kind="head"), False),
    ("attribution_patching gpt2", lambda: lm("gpt2"), lambda m: patching.attribution_patching(m, T.pair()), False),
    ("logit_lens", lm, lambda m: patching.logit_lens(m, T.lm_tokenizer(), PROMPT, " Tokyo"), False),
    ("logit_lens empty prompt", lm, lambda m: patching.logit_lens(m, T.lm_tokenizer(), "", " Tokyo"), True),
    ("hidden_states", encoder, lambda m: probing.hidden_states(m, T.text_tokenizer(), ["a fine film"]), False),
    ("hidden_states cut words", encoder, lambda m: probing.hidden_states(
        m, T.text_tokenizer(), [["a", "fine", "film"]], pooling="tokens", max_length=3), True),
    ("project_layer_output", encoder, lambda m: _project(m, fail=False), False),
    ("project_layer_output error inside", encoder, lambda m: _project(m, fail=True), True),
    ("LayerReplay", classifier, lambda m: probing.LayerReplay(m, ["a fine film", "dull"], 1).probabilities(), False),
    ("word_gradient_x_input", classifier, lambda m: perturbation.word_gradient_x_input(m, ["a", "fine"], 1), False),
    ("word_integrated_gradients", classifier,
     lambda m: perturbation.word_integrated_gradients(m, ["a", "fine"], 1, steps=2), False),
    ("hotflip", classifier, lambda m: perturbation.hotflip(m, "a fine film", max_edits=1, n_candidates=2), False),
    ("universal_trigger", classifier, lambda m: perturbation.universal_trigger(
        m, ["a fine film", "good"], 1, length=1, n_rounds=1, n_candidates=2), False),
    ("universal_trigger label 5", classifier, lambda m: perturbation.universal_trigger(
        m, ["a fine film", "good"], 5, length=1, n_rounds=1, n_candidates=2), True),
]


@pytest.mark.parametrize("make, call, raises", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_the_model_is_left_as_it_was_found(make, call, raises):
    model = make()
    before = snapshot(model)
    if raises:
        with pytest.raises(Exception):
            call(model)
    else:
        call(model)
    assert_same(before, snapshot(model))


def test_cached_hidden_states_leaves_the_model_alone(tmp_path, monkeypatch):
    monkeypatch.setenv("XAI_LESSON_CACHE", str(tmp_path))
    model = encoder()
    before = snapshot(model)
    probing.cached_hidden_states("state", model, T.text_tokenizer(), ["a fine film"])
    assert_same(before, snapshot(model))


def test_after_a_failed_guided_backprop_the_gradient_is_unchanged():
    """The case of the issue: pytorch-grad-cam's ReLUs left in the model changed every later gradient."""
    model = copy.deepcopy(T.cnn())
    reference = saliency.input_gradients(model, x2, 0)
    with pytest.raises(ValueError):
        sanity.guided_backprop(model, x2, 5000)
    assert torch.equal(saliency.input_gradients(model, x2, 0), reference)
