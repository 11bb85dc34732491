"""Every public helper rejects bad input with a plain ValueError or TypeError (issue 30).

One row per (helper, bad arguments, expected exception, message fragment). The rows use the
tiny models of ``toys.py``. ``test_every_public_helper_has_a_row`` lists the public functions of
each module by introspection, so a new helper cannot ship without a row (or a reasoned entry in
``NO_ROW``).
"""

import copy
import inspect
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pytest
import torch
from PIL import Image

import toys as T
from xai_lesson import (attacks, cam, check_setup, data, images, patching, perturbation, probing, saliency, sanity,
                        text_classifier, tracing)

MODULES = (saliency, sanity, cam, tracing, patching, probing, text_classifier, attacks, perturbation, data, images)

# Functions with no row, and why.
NO_ROW = {
    tracing.load_known_facts: "no arguments: reads the checksummed fact file",
    attacks.vader_lexicon: "no arguments: reads the checksummed sdist",
    attacks.load_occupation_statistics: "no arguments: reads the checksummed CSV",
    data.data_dir: "no arguments",
    data.read_manifest: "no arguments",
    data.verify_checksums: "no arguments: returns a list of problems by design",
    data.load_pos_silver: "no arguments",
    data.fix_for: "pure utility: advice text for any relative path",
    images.imagenet_labels: "no arguments",
    text_classifier.warn_cut: "pure utility: formats a warning from two counts",
}


@dataclass
class Row:
    helper: Callable
    call: Callable  # () -> the helper's result, with one bad argument
    error: type
    fragment: str

    def __str__(self):
        return f"{self.helper.__module__.split('.')[-1]}.{self.helper.__name__}: {self.fragment}"


def _generator():
    return torch.Generator().manual_seed(0)


def _cascade(model, x, **options):
    return next(iter(sanity.randomisation_cascade(model, x, **options)))


def _trace_result():
    return tracing.TraceResult(scores=np.zeros((2, 3)), clean_prob=0.5, corrupted_prob=0.1, answer=" Tokyo",
                               answer_id=1, tokens=["a", "b", "c"], subject_range=(0, 1), kind="hidden", window=1,
                               noise=1.0, samples=1, method="fast")


def _nan_patch_scores():
    scores = np.arange(40.0).reshape(4, 10)
    scores[:, :3] = np.nan  # uncomputed entries
    return scores


def _pil16():
    return Image.fromarray(np.full((8, 8), 60000, dtype=np.uint16))


def _empty_dataset():
    import datasets

    return datasets.Dataset.from_dict({"label": []})


def _sentiment_rows():
    import datasets

    return datasets.Dataset.from_dict({"label": [0, 1, 0, 1], "text": ["a", "b", "c", "d"]})


x1 = T.images(1)
x2 = T.images(2)
cnn = T.cnn


def fresh_cnn():
    """A copy, for helpers that changed the model they were given (issue 30): the shared one stays clean."""
    return copy.deepcopy(T.cnn())


SNIPPETS = ["a fine film", "good acting"]
DIRECTIONS = np.eye(4)[:2]

ROWS = [
    # saliency
    Row(saliency.input_gradients, lambda: saliency.input_gradients(cnn(), x1, 5000), ValueError, "out of range"),
    Row(saliency.input_gradients, lambda: saliency.input_gradients(cnn(), x1, -1), ValueError, "non-negative"),
    Row(saliency.input_gradients, lambda: saliency.input_gradients(cnn(), x1, 1.7), ValueError, "class index"),
    Row(saliency.input_gradients, lambda: saliency.input_gradients(cnn(), x1.double(), 0), TypeError, "float64"),
    Row(saliency.input_gradients, lambda: saliency.input_gradients(cnn(), x1.half(), 0), TypeError, "float16"),
    Row(saliency.input_gradients, lambda: saliency.input_gradients(cnn(), x1.permute(0, 2, 3, 1), 0), ValueError,
        "channels-last"),
    Row(saliency.gradient_times_input, lambda: saliency.gradient_times_input(cnn(), x1, True), ValueError,
        "class index"),
    Row(saliency.smoothgrad, lambda: saliency.smoothgrad(cnn(), x1, 0, n_samples=0), ValueError,
        "n_samples must be a positive int"),
    Row(saliency.integrated_gradients, lambda: saliency.integrated_gradients(cnn(), x1, 0, steps=2.5), ValueError,
        "steps must be a positive int"),
    Row(saliency.completeness_curve, lambda: saliency.completeness_curve(cnn(), x2, 0), ValueError,
        "takes one input"),
    Row(saliency.completeness, lambda: saliency.completeness(cnn(), x1, 0, torch.zeros(3)), ValueError,
        "shaped like x"),
    Row(saliency.occlusion, lambda: saliency.occlusion(cnn(), x1, 0, window=4, stride=4, batch_size=0), ValueError,
        "batch_size"),
    Row(saliency.to_heatmap, lambda: saliency.to_heatmap(torch.full((1, 3, 4, 4), math.nan)), ValueError,
        "NaN or infinite"),
    Row(saliency.rank_correlation, lambda: saliency.rank_correlation(np.array([1.0, np.nan, 2.0]),
                                                                      np.array([1.0, 2.0, 3.0])),
        ValueError, "NaN or infinite"),
    Row(saliency.reinitialise, lambda: saliency.reinitialise("layer", _generator()), TypeError, "torch.nn.Module"),
    # sanity
    Row(sanity.logit_spread, lambda: sanity.logit_spread(cnn(), x2.double()), TypeError, "float64"),
    Row(sanity.randomisation_cascade, lambda: _cascade(cnn(), x2, stages=[("top", ("nope",))]), ValueError,
        "does not have"),
    Row(sanity.randomisation_cascade, lambda: _cascade(cnn(), x2, generator=0), TypeError, "torch.Generator"),
    Row(sanity.guided_backprop, lambda: sanity.guided_backprop(fresh_cnn(), x2, 5000), ValueError, "out of range"),
    Row(sanity.guided_backprop, lambda: sanity.guided_backprop(fresh_cnn(), x2, -1), ValueError, "non-negative"),
    Row(sanity.guided_backprop, lambda: sanity.guided_backprop(fresh_cnn(), x2, 1.7), ValueError, "class index"),
    Row(sanity.sobel_edges, lambda: sanity.sobel_edges(torch.full((1, 3, 8, 8), math.inf)), ValueError,
        "NaN or infinite"),
    # cam
    Row(cam.count_hooks, lambda: cam.count_hooks(lambda x: x), TypeError, "torch.nn.Module"),
    Row(cam.activations_and_gradients, lambda: cam.activations_and_gradients(cnn(), cnn().last_conv, x1, 5000),
        ValueError, "out of range"),
    Row(cam.channel_weights, lambda: cam.channel_weights(torch.zeros(4)), ValueError, "(channels, h, w)"),
    Row(cam.gradcam_feature_map, lambda: cam.gradcam_feature_map(cnn(), torch.nn.Conv2d(3, 3, 1), x1, 0),
        ValueError, "sub-module of the model"),
    Row(cam.split_relu6, lambda: cam.split_relu6("model"), TypeError, "torch.nn.Module"),
    Row(cam.recalibrate_batchnorm, lambda: cam.recalibrate_batchnorm(cnn(), [cnn().features], x1), ValueError,
        "at least 2 images"),
    Row(cam.scale_like_library, lambda: cam.scale_like_library(np.full((4, 4), np.nan), (8, 8)), ValueError,
        "NaN or infinite"),
    Row(cam.gradcam, lambda: cam.gradcam(cnn(), cnn().last_conv, x1.permute(0, 2, 3, 1), 0), ValueError,
        "channels-last"),
    Row(cam.deletion_scores, lambda: cam.deletion_scores(cnn(), x1, np.random.rand(32, 32), 0, fill=math.nan),
        ValueError, "fill must be a finite number"),
    Row(cam.insertion_scores, lambda: cam.insertion_scores(cnn(), x1, np.random.rand(32, 32), -1), ValueError,
        "non-negative"),
    # tracing
    Row(tracing.model_modules, lambda: tracing.model_modules(cnn()), ValueError, "does not know the module names"),
    Row(tracing.subject_token_range, lambda: tracing.subject_token_range(T.lm_tokenizer(), T.PROMPT, "Paris"),
        ValueError, "does not occur"),
    Row(tracing.answer_token_id, lambda: tracing.answer_token_id(T.lm_tokenizer(), ""), ValueError, "no tokens"),
    Row(tracing.embedding_noise_scale, lambda: tracing.embedding_noise_scale(T.lm(), T.lm_tokenizer(), ["Japan"],
                                                                              factor=math.inf),
        ValueError, "factor must be a finite number"),
    Row(tracing.restore_hook, lambda: tracing.restore_hook(torch.zeros(3, 4), 3), ValueError, "out of range"),
    Row(tracing.restored_logits, lambda: tracing.restored_logits(
        T.lm(), tracing.model_modules(T.lm())["layers"], None, 5, 0, torch.zeros(1, 3, 32)), ValueError,
        "out of range"),
    Row(tracing.causal_trace, lambda: tracing.causal_trace(T.lm("gpt2", 16), T.lm_tokenizer(), T.LONG_PROMPT,
                                                           T.SUBJECT, noise=1.0, samples=1),
        ValueError, "context of 16 positions"),
    Row(tracing.causal_trace, lambda: tracing.causal_trace(T.lm(), T.lm_tokenizer(), T.PROMPT, T.SUBJECT,
                                                           noise=1.0, samples=True),
        ValueError, "samples must be a positive int"),
    Row(tracing.restored_probability, lambda: tracing.restored_probability(
        T.lm(), T.lm_tokenizer(), T.PROMPT, T.SUBJECT, [(0, 1.5)], noise=1.0, samples=1), ValueError,
        "is outside"),
    Row(tracing.token_categories, lambda: tracing.token_categories(5, (3, 9)), ValueError, "subject_range"),
    Row(tracing.average_by_category, lambda: tracing.average_by_category([np.zeros((2, 3))]), ValueError,
        "TraceResult"),
    # patching
    Row(patching.make_pair, lambda: patching.make_pair(T.lm_tokenizer(), T.PROMPT, "Paris", "Rome", " a", " b"),
        ValueError, "does not occur"),
    Row(patching.fact_pairs, lambda: patching.fact_pairs(T.lm_tokenizer(), [{"prompt": "A is", "subject": "A",
                                                                            "answer": " x"}]),
        ValueError, "is empty"),
    Row(patching.logit_difference, lambda: patching.logit_difference(torch.zeros(10), T.pair()), ValueError,
        "(the vocabulary)"),
    Row(patching.symmetric_pairs, lambda: patching.symmetric_pairs(T.lm_tokenizer(), [{"prompt": "A is", "subject": "A",
                                                                                    "answer": " x"}]),
        ValueError, "is empty"),
    Row(tracing.causal_traces, lambda: tracing.causal_traces(T.lm(), T.lm_tokenizer(), T.PROMPT, T.SUBJECT, {},
                                                             noise=1.0, samples=1),
        ValueError, "requests must be a non-empty dict"),
    Row(tracing.causal_traces, lambda: tracing.causal_traces(T.lm(), T.lm_tokenizer(), T.PROMPT, T.SUBJECT,
                                                             {"a": {"kind": "neurons"}}, noise=1.0, samples=1),
        ValueError, "kind"),
    Row(cam.relevance_order, lambda: cam.relevance_order(np.zeros(4)), ValueError, "(h, w)"),
    Row(cam.relevance_order, lambda: cam.relevance_order(np.zeros((2, 2)), seed=-1), ValueError, "seed"),
    Row(cam.rank_map, lambda: cam.rank_map(np.full((2, 2), np.nan)), ValueError, "NaN"),
    Row(cam.fast_road_imputer, lambda: cam.fast_road_imputer(-0.5), ValueError, "noise"),
    Row(cam.road_scores, lambda: cam.road_scores(cnn(), x1, np.zeros((1, 8, 8)), [None], 150), ValueError,
        "between 0 and 100"),
    Row(cam.road_scores, lambda: cam.road_scores(cnn(), x1, np.zeros((2, 8, 8)), [None], 20), ValueError,
        "one entry per image"),
    Row(patching.sites, lambda: patching.sites(T.lm(), "neurons"), ValueError, "kind must be one of"),
    Row(patching.run_with_cache, lambda: patching.run_with_cache(T.lm(), torch.tensor([[10 ** 6]]),
                                                                 patching.sites(T.lm(), "hidden")),
        ValueError, "vocabulary"),
    Row(patching.normalised_recovery, lambda: patching.normalised_recovery([0.5], 1.0, 1.0), ValueError,
        "nothing to recover"),
    Row(patching.activation_patching, lambda: patching.activation_patching(T.lm(), T.pair(),
                                                                           site_list=[torch.nn.Linear(2, 2)]),
        ValueError, "sub-module of the model"),
    Row(patching.activation_patching, lambda: patching.activation_patching(
        T.lm("gpt2", 3), T.pair()), ValueError, "context of 3 positions"),
    Row(patching.corruption_by_metric, lambda: patching.corruption_by_metric(T.lm(), T.pair(), [99], 0, 1.0),
        ValueError, "out of range"),
    Row(patching.attribution_patching, lambda: patching.attribution_patching(T.lm(), "pair"), TypeError,
        "PromptPair"),
    Row(patching.logit_lens, lambda: patching.logit_lens(T.lm("gpt2", 16), T.lm_tokenizer(), T.LONG_PROMPT,
                                                         " Tokyo"),
        ValueError, "context of 16 positions"),
    Row(patching.logit_lens, lambda: patching.logit_lens(T.lm(), T.lm_tokenizer(), "", " Tokyo"), ValueError,
        "empty"),
    Row(patching.top_k_overlap, lambda: patching.top_k_overlap(_nan_patch_scores(), np.arange(40.0), 10),
        ValueError, "NaN or infinite"),
    # probing
    Row(probing.hidden_states, lambda: probing.hidden_states(T.encoder(), T.text_tokenizer(), SNIPPETS,
                                                             max_length=10 ** 6),
        ValueError, "context of 512"),
    Row(probing.cached_hidden_states, lambda: probing.cached_hidden_states("toy", T.encoder(), T.text_tokenizer(),
                                                                           SNIPPETS, batch_size=0),
        ValueError, "batch_size must be a positive int"),
    Row(probing.linear_probe, lambda: probing.linear_probe(tol=5), ValueError, "tol must be a fraction"),
    Row(probing.mlp_probe, lambda: probing.mlp_probe(hidden=0), ValueError, "hidden (units) must be a positive int"),
    Row(probing.probe_layers, lambda: probing.probe_layers([np.full((4, 2), np.nan)], [0, 1, 0, 1], cv=2),
        ValueError, "NaN or infinite"),
    Row(probing.control_labels, lambda: probing.control_labels(["a"], [0, 1]), ValueError, "one label per word"),
    Row(probing.selectivity, lambda: probing.selectivity([0.9], [0.5, 0.4]), ValueError, "same shape"),
    Row(probing.cv_splits, lambda: probing.cv_splits([0, 1, 0, 1], cv=1), ValueError, "cv must be an int"),
    Row(probing.most_frequent_tag, lambda: probing.most_frequent_tag([], [], ["a"]), ValueError, "is empty"),
    Row(probing.corrected_paired_interval, lambda: probing.corrected_paired_interval([0.1, 0.2, 0.3], 20),
        ValueError, "test_fraction"),
    Row(probing.corrected_paired_interval, lambda: probing.corrected_paired_interval([0.1, 0.2, 0.3], math.inf),
        ValueError, "test_fraction"),
    Row(probing.selectivity_sweep, lambda: probing.selectivity_sweep(
        np.random.rand(8, 3), [0, 1] * 4, [1, 0] * 4, lambda c: probing.linear_probe(C=c), [1.0],
        np.arange(8), np.arange(8)), ValueError, "share 8 rows"),
    Row(probing.probe_directions, lambda: probing.probe_directions(probing.linear_probe()), TypeError,
        "fitted"),
    Row(probing.nullspace_projection, lambda: probing.nullspace_projection(np.stack([DIRECTIONS[0]] * 2)),
        ValueError, "linearly dependent"),
    Row(probing.nullspace_projection, lambda: probing.nullspace_projection(
        np.stack([DIRECTIONS[0], DIRECTIONS[0] + 1e-6 * DIRECTIONS[1]])), ValueError, "linearly dependent"),
    Row(probing.random_directions, lambda: probing.random_directions(5, 4, 1), ValueError, "rank <= dim"),
    # text_classifier
    Row(text_classifier.cut_texts, lambda: text_classifier.cut_texts(None, T.text_tokenizer(), "one text"),
        TypeError, "not one string"),
    Row(text_classifier.mean_pool, lambda: text_classifier.mean_pool(torch.zeros(2, 3), torch.ones(2, 3)),
        ValueError, "hidden states"),
    Row(text_classifier.train_sentiment_classifier, lambda: text_classifier.train_sentiment_classifier(
        T.encoder(), T.text_tokenizer(), SNIPPETS, [0, 2]), ValueError, "0/1"),
    Row(text_classifier.sentiment_splits, lambda: text_classifier.sentiment_splits(n_train_per_class=-1),
        ValueError, "n_train_per_class must be a positive int"),
    Row(text_classifier.build_sentiment_classifier, lambda: text_classifier.build_sentiment_classifier(0),
        ValueError, "n_train_per_class must be a positive int"),
    # attacks
    Row(attacks.parse_vader_lexicon, lambda: attacks.parse_vader_lexicon(""), ValueError, "empty"),
    Row(attacks.vocabulary_without, lambda: attacks.vocabulary_without(T.text_tokenizer(), "good"), TypeError,
        "collection of words"),
    Row(attacks.cosine_similarity, lambda: attacks.cosine_similarity(torch.eye(4), [-1], [0]), ValueError,
        "from 0 to 3"),
    Row(attacks.ablate_trigger, lambda: attacks.ablate_trigger(T.predict_proba, SNIPPETS, 1, ["awful"], [],
                                                               n_random=3),
        ValueError, "vocabulary_tokens is empty"),
    Row(attacks.flip_rates, lambda: attacks.flip_rates(T.predict_proba, SNIPPETS, 5, ["awful"]), ValueError,
        "out of range"),
    Row(attacks.flip_rates, lambda: attacks.flip_rates(T.predict_proba, SNIPPETS, -1, ["awful"]), ValueError,
        "non-negative"),
    Row(attacks.flip_rates, lambda: attacks.flip_rates(T.one_column_proba, SNIPPETS, 1, ["awful"]), ValueError,
        "shape (2, classes)"),
    Row(attacks.fill_templates, lambda: attacks.fill_templates(["The {thing}."], thing=[]), ValueError,
        "no texts"),
    Row(attacks.mft_failures, lambda: attacks.mft_failures(T.predict_proba, SNIPPETS, 5), ValueError,
        "out of range"),
    Row(attacks.invariance_failures, lambda: attacks.invariance_failures(T.predict_proba, [SNIPPETS], tolerance=-1),
        ValueError, "tolerance"),
    Row(attacks.invariance_failures, lambda: attacks.invariance_failures(T.three_class_proba, [SNIPPETS],
                                                                         tolerance=0.1),
        ValueError, "two-class"),
    Row(attacks.directional_failures, lambda: attacks.directional_failures(T.predict_proba, [SNIPPETS], "up",
                                                                           tolerance=math.nan),
        ValueError, "tolerance"),
    Row(attacks.directional_failures, lambda: attacks.directional_failures(T.three_class_proba, [SNIPPETS], "up"),
        ValueError, "two-class"),
    Row(attacks.directional_changes, lambda: attacks.directional_changes(T.three_class_proba, [SNIPPETS]),
        ValueError, "two-class"),
    Row(attacks.random_swaps, lambda: attacks.random_swaps(T.classifier(), "a fine film", [-1]), ValueError,
        "vocabulary"),
    Row(attacks.random_swaps, lambda: attacks.random_swaps(T.classifier(), "a fine film", [0], min_similarity=2),
        ValueError, "min_similarity"),
    Row(attacks.exhaustive_swaps, lambda: attacks.exhaustive_swaps(T.classifier(), "a fine film", [-1]), ValueError,
        "vocabulary"),
    Row(attacks.parse_occupation_statistics, lambda: attacks.parse_occupation_statistics("a,b\n1,2\n"), ValueError,
        "header"),
    # perturbation
    Row(perturbation.split_words, lambda: perturbation.split_words(" "), ValueError, "no words"),
    Row(perturbation.join_words, lambda: perturbation.join_words("words"), TypeError, "list of strings"),
    Row(perturbation.leave_one_out, lambda: perturbation.leave_one_out(T.predict_proba, ["a", "b"], 2), ValueError,
        "out of range"),
    Row(perturbation.input_reduction, lambda: perturbation.input_reduction(T.predict_proba, ["a", "b"], 0),
        ValueError, "min_words must be a positive int"),
    Row(perturbation.lime_masks, lambda: perturbation.lime_masks(4, True), ValueError, "n_samples"),
    Row(perturbation.lime_kernel, lambda: perturbation.lime_kernel(np.ones((2, 3)), kernel_width=math.nan),
        ValueError, "kernel_width"),
    Row(perturbation.lime, lambda: perturbation.lime(T.predict_proba, ["a", "b"], 1.0), ValueError, "class index"),
    Row(perturbation.all_coalitions, lambda: perturbation.all_coalitions(40), ValueError, "n_words"),
    Row(perturbation.shapley_kernel, lambda: perturbation.shapley_kernel(np.ones((1, 3))), ValueError,
        "infinite Shapley kernel weight"),
    Row(perturbation.kernel_shap, lambda: perturbation.kernel_shap(T.three_class_proba, ["a", "b"], 3),
        ValueError, "out of range"),
    Row(perturbation.shapley_values, lambda: perturbation.shapley_values(T.one_column_proba, ["a", "b"], 0),
        ValueError, "shape"),
    Row(perturbation.word_gradient_x_input, lambda: perturbation.word_gradient_x_input(T.classifier(), ["a"], 2),
        ValueError, "out of range"),
    Row(perturbation.word_integrated_gradients, lambda: perturbation.word_integrated_gradients(
        T.classifier(), ["a"], -1), ValueError, "non-negative"),
    Row(perturbation.whole_word_vocabulary, lambda: perturbation.whole_word_vocabulary(T.text_tokenizer(), 100),
        ValueError, "is empty"),
    Row(perturbation.first_order_flip_scores, lambda: perturbation.first_order_flip_scores(
        torch.zeros(3, 4), torch.zeros(2, 4), torch.zeros(5, 4)), ValueError, "shapes"),
    Row(perturbation.hotflip, lambda: perturbation.hotflip(T.classifier(), "a fine film", vocabulary=[-1]),
        ValueError, "vocabulary must lie from 0"),
    Row(perturbation.universal_trigger, lambda: perturbation.universal_trigger(T.classifier(), SNIPPETS, 2),
        ValueError, "out of range"),
    Row(perturbation.flip_rate, lambda: perturbation.flip_rate(T.predict_proba, SNIPPETS, 5), ValueError,
        "out of range"),
    # data and images
    Row(data.data_file, lambda: data.data_file("no/such.csv"), FileNotFoundError, "is missing"),
    Row(data.sha256, lambda: data.sha256("/no/such/file"), FileNotFoundError, "No such file"),
    Row(data.verified_file, lambda: data.verified_file("no/such.csv"), FileNotFoundError, "is missing"),
    Row(data.load_sentiment, lambda: data.load_sentiment(min_abs_rating=4.0), ValueError, "is empty"),
    Row(data.balanced_sample, lambda: data.balanced_sample(_empty_dataset(), 10), ValueError, "dataset is empty"),
    Row(data.balanced_sample, lambda: data.balanced_sample(_sentiment_rows(), 0), ValueError,
        "n_per_class must be a positive int"),
    Row(images.load_photo, lambda: images.load_photo("dog"), ValueError, "Unknown photo"),
    Row(images.preprocess, lambda: images.preprocess(_pil16()), ValueError, "16-bit"),
    Row(images.one_image, lambda: images.one_image(torch.zeros(2, 3, 4, 4), "caller"), ValueError, "batch of 2"),
    Row(images.unnormalise, lambda: images.unnormalise(torch.zeros(1, 4, 4, 4)), ValueError, "(1, 3, H, W)"),
]


def _public_functions(module):
    return [f for name, f in inspect.getmembers(module, inspect.isfunction)
            if not name.startswith("_") and f.__module__ == module.__name__]


def test_every_public_helper_has_a_row():
    covered = {row.helper for row in ROWS} | set(NO_ROW)
    missing = [f"{f.__module__}.{f.__name__}" for module in MODULES for f in _public_functions(module)
               if f not in covered]
    assert not missing, f"public helpers with no bad-input row in ROWS (add one, or a reason to NO_ROW): {missing}"


@pytest.mark.parametrize("row", ROWS, ids=str)
def test_bad_input_gives_a_plain_error(row):
    with pytest.raises(row.error) as caught:
        row.call()
    assert row.fragment in str(caught.value), f"message {str(caught.value)!r} lacks {row.fragment!r}"


# ---------------------------------------------------------------------------
# Checks that are not a single helper's argument
# ---------------------------------------------------------------------------

def _image_classifier():
    from xai_lesson.models import ImageClassifier

    return ImageClassifier("toy", cnn(), (0.5, 0.5, 0.5), (0.5, 0.5, 0.5), cnn().last_conv, ["a", "b"])


@pytest.mark.parametrize("x, fragment", [
    (T.images(1) * 255, "outside the range"),
    (T.images(1), "not normalised"),
    (T.images(1).permute(0, 2, 3, 1), "channels-last"),
    (T.images(1).double() * 2 - 1, "float64"),
])
def test_top_k_refuses_an_image_on_the_wrong_scale(x, fragment):
    with pytest.raises((ValueError, TypeError), match=fragment):
        _image_classifier().top_k(x, k=1)
    assert _image_classifier().top_k(T.images(1) * 2 - 1, k=1)[0][0] in (0, 1)


@pytest.mark.parametrize("installed, minimum, ok", [
    ("1.5", "1.5.0", True), ("1.5.0", "1.5", True), ("1.10rc1", "1.9", True), ("1.10rc1", "1.11", False),
    ("2.4.1+cpu", "2.4", True), ("0.19", "0.28", False),
])
def test_version_comparison(installed, minimum, ok):
    assert (check_setup._as_tuple(installed) >= check_setup._as_tuple(minimum)) == ok
    assert check_setup._as_tuple("1.10rc1") == (1, 10)


def test_words_past_the_cut_or_without_tokens_get_nan_in_integrated_gradients():
    words = ["good"] * 200
    with pytest.warns(UserWarning, match="never sees its last"):
        scores, _ = perturbation.word_integrated_gradients(T.classifier(), words, 1, steps=2)
    assert np.isfinite(scores[:100]).all() and np.isnan(scores[-10:]).all()
    with pytest.warns(UserWarning, match="gives no tokens"):
        scores, _ = perturbation.word_integrated_gradients(T.classifier(), ["good", "\u200b", "film"], 1, steps=2)
    assert np.isnan(scores[1]) and np.isfinite(scores[[0, 2]]).all()
