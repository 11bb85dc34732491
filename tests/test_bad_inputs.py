"""Inputs learners get wrong: each gives a clear error or a warning that names the problem and
the fix, never a silently wrong answer (issue 21). The notebooks' own calls stay quiet."""

import warnings

import numpy as np
import pytest
import torch

from xai_lesson import cam, data, models, perturbation, probing, saliency, synthetic, tracing, training
from xai_lesson.text_classifier import SentimentClassifier
from xai_lesson.training import SmallCNN


@pytest.fixture(scope="module")
def lm():
    return models.load_causal_lm()


@pytest.fixture(scope="module")
def small_cnn():
    torch.manual_seed(0)
    return SmallCNN().eval()


@pytest.fixture(scope="module")
def sentiment_model():
    encoder, tokenizer = models.load_text_encoder()
    torch.manual_seed(0)
    return SentimentClassifier(encoder, tokenizer).eval()


LONG_TEXT = " ".join(["wonderful"] * 150) + " but awful"

# ---------------------------------------------------------------------------
# Tracing
# ---------------------------------------------------------------------------
PROMPT, SUBJECT = "The Eiffel Tower is located in the city of", "The Eiffel Tower"
QUICK = {"samples": 1, "tokens": [-1], "layers": [0]}


def test_an_answer_without_its_leading_space_warns_and_suggests_it(lm):
    model, tokenizer = lm
    with pytest.warns(UserWarning, match="leading space: ' Paris'"):
        tracing.answer_token_id(tokenizer, "Paris")
    with pytest.warns(UserWarning) as caught:
        trace = tracing.causal_trace(model, tokenizer, PROMPT, SUBJECT, answer="Paris", **QUICK)
    messages = " ".join(str(w.message) for w in caught)
    assert "leading space" in messages and "p = 0.0" in messages
    assert trace.clean_prob < 0.01


def test_an_answer_whose_first_word_is_cut_into_pieces_warns(lm):
    _, tokenizer = lm
    with pytest.warns(UserWarning, match=r"only the first, ' Paris', is traced"):
        tracing.answer_token_id(tokenizer, " Parisian")


def test_an_answer_the_model_hardly_gives_warns(lm):
    model, tokenizer = lm
    with pytest.warns(UserWarning, match="only p = 0.00"):
        tracing.causal_trace(model, tokenizer, PROMPT, SUBJECT, answer=" banana", **QUICK)
    with pytest.warns(UserWarning, match="answer=None"):
        tracing.restored_probability(model, tokenizer, PROMPT, SUBJECT, [], answer=" banana", samples=1)


def test_the_notebooks_answers_give_no_warning(lm):
    model, tokenizer = lm
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for fact in tracing.load_known_facts():  # includes ' New York' and ' San Francisco'
            tracing.answer_token_id(tokenizer, fact["answer"])
        for answer in (" Russian", " Canberra", " Paris"):
            tracing.answer_token_id(tokenizer, answer)
        tracing.causal_trace(model, tokenizer, PROMPT, SUBJECT, answer=" Paris", **QUICK)


def test_a_window_wider_than_the_model_is_an_error(lm):
    model, tokenizer = lm
    with pytest.raises(ValueError, match="wider than the model's 30 layers"):
        tracing.causal_trace(model, tokenizer, PROMPT, SUBJECT, answer=" Paris", kind="mlp", window=100, **QUICK)


@pytest.mark.parametrize("noise", [float("inf"), float("nan"), -1.0])
def test_non_finite_noise_is_an_error(lm, noise):
    model, tokenizer = lm
    with pytest.raises(ValueError, match="noise must be a standard deviation"):
        tracing.causal_trace(model, tokenizer, PROMPT, SUBJECT, answer=" Paris", noise=noise, **QUICK)


def test_a_prompt_past_the_context_is_an_error(lm, monkeypatch):
    model, tokenizer = lm
    monkeypatch.setattr(model.config, "max_position_embeddings", 8)  # a long prompt, cheaply
    with pytest.raises(ValueError, match="more than the model's context of 8 positions"):
        tracing.causal_trace(model, tokenizer, PROMPT, SUBJECT, answer=" Paris", **QUICK)


def test_a_prompt_given_as_a_list_says_so(lm):
    model, tokenizer = lm
    with pytest.raises(TypeError, match="prompt must be one string, got list"):
        tracing.causal_trace(model, tokenizer, [PROMPT], SUBJECT, answer=" Paris", **QUICK)


# ---------------------------------------------------------------------------
# Saliency and CAMs
# ---------------------------------------------------------------------------

def test_a_nan_input_is_an_error_not_an_all_zero_map(small_cnn):
    x = torch.rand(1, 3, 32, 32)
    x[0, 0, 3, 3] = float("nan")
    for method in (saliency.input_gradients, saliency.smoothgrad, saliency.integrated_gradients):
        with pytest.raises(ValueError, match="NaN or infinite"):
            method(small_cnn, x, 0)


@pytest.mark.parametrize("noise_level", [float("nan"), float("inf"), True])
def test_a_non_finite_noise_level_is_an_error(small_cnn, noise_level):
    with pytest.raises(ValueError, match="noise_level must be a number >= 0"):
        saliency.smoothgrad(small_cnn, torch.rand(1, 3, 32, 32), 0, n_samples=2, noise_level=noise_level)


def test_an_occlusion_stride_larger_than_its_window_is_an_error(small_cnn):
    with pytest.raises(ValueError, match="stride 8 is larger than window"):
        saliency.occlusion(small_cnn, torch.rand(1, 3, 32, 32), 0, window=4, stride=8)
    result = saliency.occlusion(small_cnn, torch.rand(1, 3, 32, 32), 0, window=4, stride=4)
    assert torch.isfinite(result).all()


def test_nan_maps_are_an_error_not_a_score_of_zero(small_cnn):
    maps = torch.full((2, 8, 8), float("nan"))
    masks = torch.zeros(2, 8, 8, dtype=torch.bool)
    masks[:, :2, :2] = True
    for score in (synthetic.mass_inside, synthetic.pointing_game):
        with pytest.raises(ValueError, match="NaN or infinite"):
            score(maps, masks)
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="cam holds NaN"):
        cam.deletion_scores(small_cnn, x, np.full((32, 32), np.nan), 0)


def test_a_negative_deletion_target_is_an_error(small_cnn):
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="non-negative int"):
        cam.deletion_scores(small_cnn, x, np.random.default_rng(0).random((32, 32)), -1)
    with pytest.raises(ValueError, match="out of range: the model has 2 classes"):
        cam.deletion_scores(small_cnn, x, np.random.default_rng(0).random((32, 32)), 2)


def test_a_linear_gradcam_layer_says_it_needs_a_feature_map(small_cnn):
    with pytest.raises(ValueError, match="outputs \\(1, 2\\), but GradCAM needs a layer whose output is a feature map"):
        cam.gradcam(small_cnn, small_cnn.classifier, torch.rand(1, 3, 32, 32), 0)
    assert cam.count_hooks(small_cnn) == 0


def test_a_uint8_image_says_how_to_convert_it(small_cnn):
    image = torch.randint(0, 255, (1, 3, 32, 32), dtype=torch.uint8)
    with pytest.raises(TypeError, match="float tensor, got dtype torch.uint8"):
        cam.gradcam(small_cnn, small_cnn.last_conv, image, 0)
    with pytest.raises(TypeError, match="must be a float tensor"):
        saliency.input_gradients(small_cnn, image, 0)


def test_top_k_checks_k_and_the_image_type():
    classifier = models.ImageClassifier("toy", torch.nn.Sequential(torch.nn.Flatten(), torch.nn.LazyLinear(10)),
                                        (0.5,) * 3, (0.5,) * 3, None, [str(i) for i in range(10)])
    x = torch.rand(1, 3, 4, 4) * 2 - 1  # normalised with mean and std 0.5, as preprocess does
    assert len(classifier.top_k(x, k=10)) == 10
    for k in (2000, 0, 2.5):
        with pytest.raises(ValueError, match="k must be a whole number from 1 to 10"):
            classifier.top_k(x, k=k)
    with pytest.raises(TypeError, match="classifier.preprocess"):
        classifier.top_k((x * 255).to(torch.uint8))


def test_fit_on_no_images_is_an_error(small_cnn):
    with pytest.raises(ValueError, match="holds no images"):
        training.fit(small_cnn, torch.zeros(0, 3, 32, 32), torch.zeros(0, dtype=torch.long))


# ---------------------------------------------------------------------------
# Text
# ---------------------------------------------------------------------------

def test_predict_proba_warns_when_it_cuts_a_text(sentiment_model):
    with pytest.warns(UserWarning, match="1 of 2 texts are longer than 128 tokens"):
        sentiment_model.predict_proba([LONG_TEXT, "A fine film."])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sentiment_model.predict_proba(["A fine film.", "Dull."])


def test_words_past_the_cut_get_nan_not_zero(sentiment_model):
    words = perturbation.split_words(LONG_TEXT)
    with pytest.warns(UserWarning, match="never sees its last"):
        scores = perturbation.word_gradient_x_input(sentiment_model, words, 1)
    assert np.isfinite(scores[:100]).all()
    assert np.isnan(scores[-2:]).all()  # 'but awful' was cut


def test_a_rating_threshold_above_the_scale_is_an_error():
    with pytest.raises(ValueError, match="ratings run from -4 to 4"):
        data.load_sentiment(min_abs_rating=5)
    with pytest.raises(ValueError, match="number of 0 or more"):
        data.load_sentiment(min_abs_rating=float("nan"))


def test_an_empty_word_to_the_probe_is_named():
    with pytest.raises(ValueError, match="empty or blank word at position 1"):
        probing.hidden_states(None, None, [["good", "", "film"]], pooling="tokens")


# ---------------------------------------------------------------------------
# The probing cache
# ---------------------------------------------------------------------------

@pytest.fixture
def probing_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XAI_LESSON_CACHE", str(tmp_path))
    encoder, tokenizer = models.load_text_encoder()
    texts = ["A fine film.", "Dull and long.", "I loved it."]
    first = probing.cached_hidden_states("toy", encoder, tokenizer, texts)
    files = sorted((tmp_path / "probing").glob("toy-*-layer*.npy"))
    assert len(files) == len(first) and (tmp_path / "probing").glob("toy-*.json")
    return encoder, tokenizer, texts, first, files


@pytest.mark.parametrize("damage", ["same-size garbage", "truncated", "NaN written by hand"])
def test_a_damaged_probing_cache_is_found_and_recomputed(probing_cache, damage):
    encoder, tokenizer, texts, first, files = probing_cache
    path = files[3]
    if damage == "same-size garbage":
        raw = bytearray(path.read_bytes())
        raw[-64:] = b"\xff" * 64  # float32 0xffffffff is NaN
        path.write_bytes(bytes(raw))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    else:
        array = np.load(path)
        array[0, 0] = np.nan
        np.save(path, array)
    with pytest.warns(UserWarning, match="computing it again"):
        again = probing.cached_hidden_states("toy", encoder, tokenizer, texts)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # repaired: the next load is quiet
        probing.cached_hidden_states("toy", encoder, tokenizer, texts)
