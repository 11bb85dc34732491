"""Probing: hidden states per layer, masked pooling, word alignment, probes and control tasks."""

import numpy as np
import pytest
import torch

from xai_lesson import probing, text_classifier
from xai_lesson.models import load_text_encoder
from xai_lesson.probing import (cached_hidden_states, control_labels, hidden_states, linear_probe,
                                mlp_probe, probe_layers, selectivity)


@pytest.fixture(scope="module")
def encoder_and_tokenizer():
    return load_text_encoder()


def test_minilm_gives_seven_layers_and_the_last_one_is_the_models_output(encoder_and_tokenizer):
    model, tokenizer = encoder_and_tokenizer
    texts = ["A fine film.", "Dull and far too long."]
    layers = hidden_states(model, tokenizer, texts)
    assert len(layers) == 7
    assert all(layer.shape == (2, 384) for layer in layers)
    batch = tokenizer(texts[:1], return_tensors="pt")
    with torch.no_grad():
        last = model(**batch).last_hidden_state[0].mean(0).numpy()
    np.testing.assert_allclose(layers[-1][0], last, atol=1e-5)
    assert not np.allclose(layers[0], layers[-1])


def test_mean_pooling_is_the_shared_masked_mean():
    # One implementation for the whole lesson: the probing module must not keep its own copy.
    assert probing.mean_pool is text_classifier.mean_pool
    hidden = torch.tensor([[[1.0, 2.0], [3.0, 4.0], [100.0, 100.0]]])
    mask = torch.tensor([[1, 1, 0]])
    np.testing.assert_allclose(probing.mean_pool(hidden, mask).numpy(), [[2.0, 3.0]])


def test_mean_pooling_ignores_padding(encoder_and_tokenizer):
    model, tokenizer = encoder_and_tokenizer
    short = "A fine film."
    alone = hidden_states(model, tokenizer, [short])
    padded = hidden_states(model, tokenizer, [short, "a much longer sentence that pads " * 8])
    for layer_alone, layer_padded in zip(alone, padded):
        np.testing.assert_allclose(layer_alone[0], layer_padded[0], atol=1e-5)


def test_rows_come_back_in_the_order_of_the_texts(encoder_and_tokenizer):
    # hidden_states batches texts by length; the result must not show it.
    model, tokenizer = encoder_and_tokenizer
    texts = ["A long, winding and rather tedious story about nothing much at all.", "Dull.",
             "A fine film."]
    together = hidden_states(model, tokenizer, texts, batch_size=2)
    for row, text in enumerate(texts):
        alone = hidden_states(model, tokenizer, [text])
        for layer_together, layer_alone in zip(together, alone):
            np.testing.assert_allclose(layer_together[row], layer_alone[0], atol=1e-5)
    sentences = [["A", "long", ",", "winding", "and", "tedious", "story", "."], ["Dull", "."],
                 ["A", "gem", "!"]]
    words = hidden_states(model, tokenizer, sentences, pooling="tokens", batch_size=2)
    start = 0
    for sentence in sentences:
        alone = hidden_states(model, tokenizer, [sentence], pooling="tokens")
        np.testing.assert_allclose(words[-1][start:start + len(sentence)], alone[-1], atol=1e-5)
        start += len(sentence)
    assert start == words[-1].shape[0]


def test_tokens_pooling_gives_one_row_per_word_aligned_to_its_first_piece(encoder_and_tokenizer):
    model, tokenizer = encoder_and_tokenizer
    sentences = [["Unbelievably", "tedious", "."], ["A", "gem", "!"]]
    first = hidden_states(model, tokenizer, sentences, pooling="tokens")
    mean = hidden_states(model, tokenizer, sentences, pooling="tokens", word_piece="mean")
    assert len(first) == 7 and all(layer.shape == (6, 384) for layer in first)
    batch = tokenizer(sentences[0], is_split_into_words=True, return_tensors="pt")
    pieces = [i for i, w in enumerate(batch.word_ids()) if w == 0]
    assert len(pieces) > 1, "the test needs a word split into several pieces"
    with torch.no_grad():
        states = model(**batch).last_hidden_state[0]
    np.testing.assert_allclose(first[-1][0], states[pieces[0]].numpy(), atol=1e-5)
    np.testing.assert_allclose(mean[-1][0], states[pieces].mean(0).numpy(), atol=1e-5)
    # "A" and "gem" are single pieces, so both alignments agree on them.
    np.testing.assert_allclose(first[-1][3:5], mean[-1][3:5], atol=1e-5)


def test_cache_returns_the_same_states_and_depends_on_the_weights(encoder_and_tokenizer, tmp_path,
                                                                  monkeypatch):
    monkeypatch.setenv("XAI_LESSON_CACHE", str(tmp_path))
    model, tokenizer = encoder_and_tokenizer
    texts = ["A fine film.", "Dull."]
    fresh = cached_hidden_states("unit", model, tokenizer, texts)
    assert len(list((tmp_path / "probing").glob("unit-*.npy"))) == 7
    def fail(*args, **kwargs):
        raise AssertionError("the cached states should have been read from disk")

    monkeypatch.setattr(probing, "hidden_states", fail)
    again = cached_hidden_states("unit", model, tokenizer, texts)
    monkeypatch.undo()
    monkeypatch.setenv("XAI_LESSON_CACHE", str(tmp_path))
    for a, b in zip(fresh, again):
        np.testing.assert_array_equal(a, b)
    from transformers import AutoModel

    torch.manual_seed(0)
    random_model = AutoModel.from_config(model.config).eval()
    other = cached_hidden_states("unit", random_model, tokenizer, texts)
    assert len(list((tmp_path / "probing").glob("unit-*.npy"))) == 14
    assert not np.allclose(other[-1], fresh[-1])


def test_probe_finds_the_layer_that_holds_the_signal():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    noise = rng.normal(size=(200, 5))
    signal = noise.copy()
    signal[:, 0] += 4 * labels
    mean, std = probe_layers([noise, signal], labels, cv=5, seed=0)
    assert mean.shape == std.shape == (2,)
    assert mean[1] > 0.95
    assert abs(mean[0] - 0.5) < 0.15
    assert np.all(std >= 0)


def test_probe_with_groups_keeps_each_group_in_one_fold():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(20), 10)
    labels = groups % 2
    # Each group has its own random direction: only memorising groups would help.
    features = rng.normal(size=(20, 32))[groups] + 0.01 * rng.normal(size=(200, 32))
    def probe():
        return linear_probe(C=1.0)

    grouped, _ = probe_layers([features], labels, cv=4, groups=groups, probe=probe)
    mixed, _ = probe_layers([features], labels, cv=4, probe=probe)
    assert mixed[0] > 0.95
    assert grouped[0] < mixed[0] - 0.2


def test_linear_probe_has_no_hidden_layer_and_mlp_probe_has_one():
    linear = linear_probe()
    assert type(linear[-1]).__name__ == "LogisticRegression"
    mlp = mlp_probe(hidden=32)
    assert mlp[-1].hidden_layer_sizes == (32,)


def test_control_labels_give_each_word_type_one_label_from_the_task_labels():
    words = ["the", "film", "The", "is", "film", "dull", "is"]
    tags = ["DET", "NOUN", "DET", "AUX", "NOUN", "ADJ", "AUX"]
    control = control_labels(words, tags, seed=3)
    assert control[0] == control[2] and control[1] == control[4] and control[3] == control[6]
    assert set(control) <= set(tags)
    big = [f"w{i}" for i in range(2000)]
    spread = control_labels(big, ["A"] * 1500 + ["B"] * 500, seed=0)
    assert 0.7 < np.mean(spread == "A") < 0.8
    np.testing.assert_array_equal(selectivity([0.9, 0.8], [0.6, 0.7]), [0.9 - 0.6, 0.8 - 0.7])


def test_bad_inputs_are_explained(encoder_and_tokenizer):
    model, tokenizer = encoder_and_tokenizer
    with pytest.raises(TypeError, match="wrap it as"):
        hidden_states(model, tokenizer, "one string")
    with pytest.raises(TypeError, match="pre-split"):
        hidden_states(model, tokenizer, ["not split"], pooling="tokens")
    with pytest.raises(ValueError, match="pooling must be"):
        hidden_states(model, tokenizer, ["x"], pooling="cls")
    with pytest.raises(ValueError, match="cut off"):
        hidden_states(model, tokenizer, [["word"] * 40], pooling="tokens", max_length=16)
    with pytest.raises(ValueError, match="one row per label"):
        probe_layers([np.zeros((3, 2))], [0, 1])
    with pytest.raises(TypeError, match="one per layer"):
        probe_layers(np.zeros((4, 2)), [0, 1, 0, 1])
    with pytest.raises(ValueError, match="fewer than cv"):
        probe_layers([np.zeros((6, 2))], [0, 0, 0, 0, 0, 1], cv=2)
    with pytest.raises(ValueError, match="same shape"):
        selectivity([0.9], [0.5, 0.4])

    with pytest.raises(ValueError, match="word_piece must be"):
        hidden_states(model, tokenizer, [["a"]], pooling="tokens", word_piece="last")
    with pytest.raises(ValueError, match="batch_size must be"):
        hidden_states(model, tokenizer, ["x"], batch_size=0)
    with pytest.raises(ValueError, match="texts is empty"):
        hidden_states(model, tokenizer, [])
    with pytest.raises(ValueError, match="name must be"):
        cached_hidden_states("../escape", model, tokenizer, ["x"])
    with pytest.raises(ValueError, match="single class"):
        probe_layers([np.zeros((4, 2))], [1, 1, 1, 1])
    with pytest.raises(ValueError, match="cv must be"):
        probe_layers([np.zeros((4, 2))], [0, 1, 0, 1], cv=1)
    with pytest.raises(ValueError, match="one per label"):
        probe_layers([np.zeros((4, 2))], [0, 1, 0, 1], cv=2, groups=[0, 1])
    with pytest.raises(ValueError, match="one label per word"):
        control_labels(["a", "b"], ["X"])


def test_word_alignment_needs_a_fast_tokenizer(encoder_and_tokenizer):
    model, tokenizer = encoder_and_tokenizer
    assert tokenizer.is_fast

    class SlowTokenizer:
        """Stands in for a pure-Python tokenizer, which cannot map word pieces back to words."""

        is_fast = False

    with pytest.raises(TypeError, match="fast"):
        hidden_states(model, SlowTokenizer(), [["A", "gem"]], pooling="tokens")


# --- baselines, paired intervals, sweeps and the projection intervention (issue 16) ---

def test_cv_splits_are_the_folds_probe_layers_uses():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 30)
    features = rng.normal(size=(60, 4)) + labels[:, None]
    splits = probing.cv_splits(labels, cv=3, seed=0)
    from sklearn.model_selection import cross_val_score

    by_hand = cross_val_score(linear_probe(), features, labels, cv=splits)
    mean, std = probe_layers([features], labels, cv=3, seed=0)
    np.testing.assert_allclose([by_hand.mean(), by_hand.std()], [mean[0], std[0]])
    groups = np.repeat(np.arange(12), 5)
    for train, test in probing.cv_splits(labels, cv=3, groups=groups):
        assert not set(groups[train]) & set(groups[test])
    with pytest.raises(ValueError, match="one per label"):
        probing.cv_splits(labels, cv=3, groups=[0, 1])


def test_most_frequent_tag_counts_training_words_and_flags_unseen_ones():
    train_words = ["The", "run", "run", "run", "a", "dog"]
    train_tags = ["DET", "VERB", "NOUN", "VERB", "DET", "NOUN"]
    predicted, seen = probing.most_frequent_tag(train_words, train_tags, ["the", "run", "cat", "dog"])
    # "the" matches "The" (lower-cased); "run" is a VERB 2 times out of 3; "cat" is unseen and gets
    # the most frequent tag overall (DET and NOUN and VERB tie at 2; ties go to the first in sort order).
    assert predicted.tolist() == ["DET", "VERB", "DET", "NOUN"]
    assert seen.tolist() == [True, True, False, True]
    with pytest.raises(ValueError, match="one tag per training word"):
        probing.most_frequent_tag(["a"], ["X", "Y"], ["a"])


def test_corrected_paired_interval_is_wider_than_the_naive_one():
    from scipy import stats

    differences = np.array([0.02, 0.03, 0.01, 0.04, 0.02])
    mean, low, high = probing.corrected_paired_interval(differences, test_fraction=0.25)
    naive = stats.t.interval(0.95, 4, loc=differences.mean(), scale=stats.sem(differences))
    assert mean == pytest.approx(0.024)
    assert low < naive[0] < naive[1] < high
    assert low > 0  # a consistent gain stays significant after the correction
    _, low, high = probing.corrected_paired_interval([0.01, -0.02, 0.0, 0.02, -0.01], 0.25)
    assert low < 0 < high
    with pytest.raises(ValueError, match="at least 2"):
        probing.corrected_paired_interval([0.1], 0.25)


def test_selectivity_sweep_shows_that_a_weak_penalty_memorises_more():
    rng = np.random.default_rng(0)
    n_types, n = 200, 2000
    word_of_token = rng.integers(n_types, size=n)
    word_vectors = rng.normal(size=(n_types, 20))
    task = (word_vectors[:, 0] > 0).astype(int)[word_of_token]  # one direction carries the task
    control = rng.integers(3, size=n_types)[word_of_token]        # random label per word type
    features = word_vectors[word_of_token] + 0.1 * rng.normal(size=(n, 20))
    train, test = np.arange(1500), np.arange(1500, n)
    result = probing.selectivity_sweep(features, task, control, lambda C: linear_probe(C=C),
                                       [1e-4, 100.0], train, test)
    assert set(result) == {"task", "control", "selectivity", "task_correct", "control_correct"}
    np.testing.assert_allclose(result["selectivity"], result["task"] - result["control"])
    # The per-row results behind each accuracy, for paired comparisons on the same rows.
    assert result["task_correct"].shape == result["control_correct"].shape == (2, len(test))
    assert result["task_correct"].dtype == bool
    np.testing.assert_allclose(result["task_correct"].mean(1), result["task"])
    refit = linear_probe(C=100.0).fit(features[train], control[train])
    np.testing.assert_array_equal(result["control_correct"][1], refit.predict(features[test]) == control[test])
    assert result["task"][1] > 0.9
    assert result["control"][1] > result["control"][0] + 0.05
    with pytest.raises(ValueError, match="values is empty"):
        probing.selectivity_sweep(features, task, control, linear_probe, [], train, test)


def test_projection_removes_the_probe_direction_and_nothing_else():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1], 100)
    features = rng.normal(size=(200, 6)) * [1, 2, 3, 1, 1, 1]
    features[:, 1] += 3 * labels
    probe = linear_probe(C=1.0).fit(features, labels)
    direction = probing.probe_directions(probe)
    assert direction.shape == (1, 6)
    P = probing.nullspace_projection(direction)
    np.testing.assert_allclose(P, P.T, atol=1e-12)
    np.testing.assert_allclose(P @ P, P, atol=1e-12)
    # The probe's logit no longer depends on the features: it is the same for every example.
    logits = probe.decision_function(features @ P)
    assert np.ptp(logits) < 1e-6 * np.ptp(probe.decision_function(features))
    # A vector orthogonal to the direction is left alone.
    other = rng.normal(size=6)
    other -= (other @ direction[0]) / (direction[0] @ direction[0]) * direction[0]
    np.testing.assert_allclose(other @ P, other, atol=1e-12)
    assert np.linalg.matrix_rank(P) == 5
    sets = probing.random_directions(2, 6, n=3, seed=0)
    assert len(sets) == 3 and all(s.shape == (2, 6) for s in sets)
    assert np.linalg.matrix_rank(probing.nullspace_projection(sets[0])) == 4
    with pytest.raises(ValueError, match="n_directions <= dim"):
        probing.nullspace_projection(np.ones((7, 6)))
    with pytest.raises(ValueError, match="non-zero"):
        probing.nullspace_projection(np.zeros((1, 6)))
    with pytest.raises(TypeError, match="fitted"):
        probing.probe_directions(linear_probe())


def test_project_layer_output_feeds_the_projected_state_to_later_layers_and_is_undone(encoder_and_tokenizer):
    model, tokenizer = encoder_and_tokenizer
    texts = ["A fine film.", "Dull and far too long."]
    before = hidden_states(model, tokenizer, texts)
    direction = np.random.default_rng(0).normal(size=(1, 384))
    unit = torch.tensor(direction[0] / np.linalg.norm(direction), dtype=torch.float32)
    P = probing.nullspace_projection(direction)
    layer4_input = {}

    def record(module, args, kwargs):
        layer4_input["states"] = args[0] if args else kwargs["hidden_states"]

    handle = model.encoder.layer[3].register_forward_pre_hook(record, with_kwargs=True)
    try:
        with probing.project_layer_output(model, 3, P):
            during = hidden_states(model, tokenizer, texts)
    finally:
        handle.remove()
    after = hidden_states(model, tokenizer, texts)
    # Layer 4 receives layer 3's output with no component along the removed direction.
    states = layer4_input["states"]
    assert states.abs().max() > 1.0, "the recorded input must be live"
    assert (states @ unit).abs().max() < 1e-4
    # Layers 1-3 are untouched (transformers records hidden_states[3] before our hook replaces it),
    # and the layers after it change.
    for layer in range(4):
        np.testing.assert_allclose(during[layer], before[layer], atol=1e-5)
    assert not np.allclose(during[6], before[6], atol=1e-3)
    for a, b in zip(after, before):
        np.testing.assert_allclose(a, b, atol=1e-6)
    with pytest.raises(ValueError, match="layer must be"):
        probing.project_layer_output(model, 0, P)
    with pytest.raises(ValueError, match="projection must be"):
        probing.project_layer_output(model, 3, np.eye(5))


def test_layer_replay_matches_the_hook_on_the_full_model(encoder_and_tokenizer):
    model, tokenizer = encoder_and_tokenizer
    texts = ["A fine film.", "Dull and far too long.", "The best thing I saw all year, by far.", "Meh."]
    classifier = text_classifier.SentimentClassifier(model, tokenizer).eval()
    torch.manual_seed(0)
    torch.nn.init.normal_(classifier.head.weight, std=0.5)
    replay = probing.LayerReplay(classifier, texts, 3, batch_size=3)
    np.testing.assert_allclose(replay.probabilities(), classifier.predict_proba(texts), atol=1e-5)
    P = probing.nullspace_projection(np.random.default_rng(1).normal(size=(2, 384)))
    with probing.project_layer_output(model, 3, P):
        expected = classifier.predict_proba(texts)
    assert not np.allclose(expected, classifier.predict_proba(texts), atol=1e-4), "the projection must matter"
    np.testing.assert_allclose(replay.probabilities(P), expected, atol=1e-5)
    with pytest.raises(ValueError, match="layer must be"):
        probing.LayerReplay(classifier, texts, 6)


def test_cached_last_layer_states_can_train_the_sentiment_head(encoder_and_tokenizer):
    model, tokenizer = encoder_and_tokenizer
    texts = ["A fine film.", "Dull and far too long.", "A gem!", "Tedious."]
    labels = [1, 0, 1, 0]
    last = hidden_states(model, tokenizer, texts)[-1]
    classifier = text_classifier.SentimentClassifier(model, tokenizer).eval()
    np.testing.assert_allclose(last, classifier.pooled(texts), atol=1e-5)
    reused = text_classifier.train_sentiment_classifier(model, tokenizer, texts, labels, features=last)
    fresh = text_classifier.train_sentiment_classifier(model, tokenizer, texts, labels)
    np.testing.assert_allclose(reused.head.weight.numpy(), fresh.head.weight.numpy(), atol=1e-4)
    with pytest.raises(ValueError, match="one row of 384"):
        text_classifier.train_sentiment_classifier(model, tokenizer, texts, labels, features=last[:2])
