"""The shared sentiment classifier: masked pooling, and a head equal to scikit-learn's fit."""

import numpy as np
import pytest
import torch

from xai_lesson.data import balanced_sample, load_sentiment
from xai_lesson.models import load_text_encoder
from xai_lesson.text_classifier import mean_pool, train_sentiment_classifier


@pytest.fixture(scope="module")
def encoder_and_tokenizer():
    return load_text_encoder()


@pytest.fixture(scope="module")
def small_classifier(encoder_and_tokenizer):
    train = balanced_sample(load_sentiment(min_abs_rating=1.0), 40, seed=0)
    return train_sentiment_classifier(*encoder_and_tokenizer, train["text"], train["label"]), train


def test_mean_pool_ignores_padding():
    hidden = torch.tensor([[[1.0], [3.0], [100.0]]])
    assert float(mean_pool(hidden, torch.tensor([[1, 1, 0]]))) == 2.0


def test_a_sentence_gets_the_same_probability_alone_and_padded_in_a_batch(small_classifier):
    classifier, _ = small_classifier
    short = "A fine film."
    alone = classifier.predict_proba([short])
    padded = classifier.predict_proba([short, "A much longer sentence " * 10])[:1]
    np.testing.assert_allclose(alone, padded, atol=1e-5)


def test_pooled_rows_keep_the_input_order(small_classifier):
    classifier, _ = small_classifier
    texts = ["A much longer sentence about a film that goes on and on.", "Fine.", "A good film."]
    batched = classifier.pooled(texts, batch_size=2)  # sorted by length inside, returned in input order
    one_by_one = np.concatenate([classifier.pooled([text]) for text in texts])
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)


def test_head_reproduces_the_logistic_regression(small_classifier):
    from sklearn.linear_model import LogisticRegression

    classifier, train = small_classifier
    features = classifier.pooled(train["text"])
    regression = LogisticRegression(max_iter=2000, random_state=0).fit(features, train["label"])
    logits = classifier.head(torch.from_numpy(features)).detach().numpy()
    np.testing.assert_allclose(logits[:, 1] - logits[:, 0], regression.decision_function(features), atol=1e-3)


def test_gradients_reach_the_word_embeddings(small_classifier):
    classifier, _ = small_classifier
    input_ids, mask = classifier.encode(["A wonderful film."])
    embeddings = classifier.word_embeddings(input_ids).detach().requires_grad_(True)
    classifier(inputs_embeds=embeddings, attention_mask=mask)[0, 1].backward()
    assert embeddings.grad.abs().sum() > 0


def test_bad_inputs_are_explained(encoder_and_tokenizer, small_classifier):
    classifier, _ = small_classifier
    with pytest.raises(TypeError, match="wrap it as"):
        classifier.predict_proba("one string")
    with pytest.raises(ValueError, match="one 0/1 value per text"):
        train_sentiment_classifier(*encoder_and_tokenizer, ["a", "b"], [0, 2])
    with pytest.raises(ValueError, match="exactly one of"):
        classifier()
