"""Perturbation-based explanations and attacks for text classifiers.

The model-agnostic methods (leave-one-out, input reduction, LIME, KernelSHAP)
only need a ``predict_proba`` function that maps a list of strings to an array of class
probabilities of shape (number of texts, number of classes). They work at the
level of *words*: the pieces that ``split_words`` cuts a text into.

The gradient-guided methods (word saliency, HotFlip-style substitution and the
universal trigger search) need the lesson's ``SentimentClassifier`` (see
``xai_lesson.text_classifier``), because they read gradients at its word
embeddings.

References: Feng et al. (2018) for input reduction, Ribeiro et al. (2016) for
LIME, Lundberg & Lee (2017) for KernelSHAP, Ebrahimi et al. (2018) for HotFlip,
Wallace et al. (2019) for universal adversarial triggers.
"""

import re
import warnings
from dataclasses import dataclass, field

import numpy as np
import torch

from xai_lesson import validate

WORD = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")


def split_words(text):
    """Cut a text into words and punctuation marks: ``"It's fine, really."`` -> 5 words."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}.")
    words = WORD.findall(text)
    if not words:
        raise ValueError(f"the text {text!r} has no words in it.")
    return words


def join_words(words):
    """The text that the model sees for a list of words (joined by spaces)."""
    if isinstance(words, str) or not all(isinstance(w, str) for w in words):
        raise TypeError("words must be a list of strings: use split_words(text) first.")
    return " ".join(words)


def _check_words(words, minimum=1):
    if isinstance(words, str):
        raise TypeError("pass a list of words, not a string: use split_words(text) first.")
    words = list(words)
    if len(words) < minimum or not all(isinstance(w, str) and w for w in words):
        raise ValueError(f"need a list of at least {minimum} non-empty word strings, got {words!r}.")
    return words


def _probabilities(predict_proba, texts, target=None):
    if not callable(predict_proba):
        raise TypeError("predict_proba must be a function from a list of texts to an array of "
                        "probabilities, for example classifier.predict_proba.")
    if target is not None:
        validate.class_index(target)
    probs = validate.probabilities(predict_proba(texts), len(texts))
    if target is not None:
        validate.class_index(target, probs.shape[1])
    return probs


def leave_one_out(predict_proba, words, target):
    """Importance of each word: p(target | all words) - p(target | all words but that one).

    Positive scores mark words that support the target class. All ``len(words) + 1``
    texts go to ``predict_proba`` in one call.
    """
    words = _check_words(words, minimum=2)
    texts = [join_words(words)] + [join_words(words[:i] + words[i + 1:]) for i in range(len(words))]
    probs = _probabilities(predict_proba, texts, target)[:, target]
    return probs[0] - probs[1:]


@dataclass
class Reduction:
    """The result of input reduction."""

    words: list
    label: int
    removed: list
    original_probability: float
    probability: float


def input_reduction(predict_proba, words, min_words=1):
    """Input reduction (Feng et al. 2018) with leave-one-out importance.

    At each step, remove the word whose removal keeps the predicted class's
    probability highest (the least important word). Stop before the predicted
    class would change, or at ``min_words`` words.
    """
    words = _check_words(words)
    validate.count(min_words, "min_words")
    probs = _probabilities(predict_proba, [join_words(words)])[0]
    label = int(probs.argmax())
    original = probability = float(probs[label])
    current, removed = list(words), []
    while len(current) > min_words:
        candidates = [current[:i] + current[i + 1:] for i in range(len(current))]
        probs = _probabilities(predict_proba, [join_words(c) for c in candidates])
        best = int(probs[:, label].argmax())
        if int(probs[best].argmax()) != label:
            break
        removed.append(current[best])
        current, probability = candidates[best], float(probs[best, label])
    return Reduction(current, label, removed, original, probability)


@dataclass
class LimeExplanation:
    """A LIME surrogate for one text: one weight per word, and how well it fits."""

    weights: np.ndarray
    intercept: float
    r2: float
    masks: np.ndarray = field(repr=False)
    probabilities: np.ndarray = field(repr=False)
    sample_weights: np.ndarray = field(repr=False)


def lime_masks(n_words, n_samples, seed=0):
    """Random word masks, a variant of LIME's sampler: row 0 keeps every word; each other
    row removes between 1 and ``n_words - 1`` words, the number drawn uniformly. (The
    ``lime`` package removes 1 to ``n_words`` words, so it can also draw the empty text.)"""
    validate.count(n_words, "n_words (LIME needs words to drop)", minimum=2)
    validate.count(n_samples, "n_samples")
    rng = np.random.default_rng(seed)
    masks = np.ones((n_samples, n_words), dtype=int)
    for row in masks[1:]:
        row[rng.choice(n_words, rng.integers(1, n_words), replace=False)] = 0
    return masks


def lime_kernel(masks, kernel_width=0.25):
    """Proximity weight of each sample: exponential kernel on the cosine distance to the full text."""
    masks = np.asarray(masks, dtype=float)
    if masks.ndim != 2 or not np.isin(masks, (0, 1)).all():
        raise ValueError(f"masks must be a 2-D array of 0s and 1s (one row per sample, one column per word), "
                         f"got shape {masks.shape}.")
    if (masks.sum(1) == 0).any():
        raise ValueError("every mask must keep at least one word: a row of all zeros has no cosine distance.")
    if validate.number(kernel_width, "kernel_width") <= 0:
        raise ValueError(f"kernel_width must be positive, got {kernel_width!r}.")
    distance = 1.0 - masks.sum(1) / np.sqrt(masks.sum(1) * masks.shape[1])
    return np.sqrt(np.exp(-(distance ** 2) / kernel_width ** 2))


def lime(predict_proba, words, target, n_samples=500, kernel_width=0.25, n_features=None,
         alpha=1.0, seed=0):
    """LIME for text (Ribeiro et al. 2016), from scratch.

    Drop words at random, weight each perturbed text by its proximity to the
    original, and fit a weighted ridge regression of p(target) on the word masks.
    With ``n_features``, keep only the words with the largest absolute weights
    and refit, which gives a sparse surrogate. ``r2`` is the weighted R^2 of the
    returned surrogate on the samples: how faithful it is locally.
    """
    from sklearn.linear_model import Ridge

    words = _check_words(words, minimum=2)
    validate.count(n_samples, "n_samples", minimum=10)
    if validate.number(kernel_width, "kernel_width") <= 0:
        raise ValueError(f"kernel_width must be positive, got {kernel_width!r}.")
    validate.number(alpha, "alpha (the ridge penalty)", minimum=0)
    if n_features is not None and not (isinstance(n_features, int) and 1 <= n_features <= len(words)):
        raise ValueError(f"n_features must be None or a whole number from 1 to {len(words)}, "
                         f"got {n_features!r}.")
    masks = lime_masks(len(words), n_samples, seed)
    texts = [join_words([w for w, keep in zip(words, row) if keep]) for row in masks]
    y = _probabilities(predict_proba, texts, target)[:, target]
    sample_weights = lime_kernel(masks, kernel_width)
    surrogate = Ridge(alpha=alpha).fit(masks, y, sample_weight=sample_weights)
    columns = np.arange(len(words))
    if n_features is not None:
        columns = np.sort(np.argsort(-np.abs(surrogate.coef_), kind="stable")[:n_features])
        surrogate = Ridge(alpha=alpha).fit(masks[:, columns], y, sample_weight=sample_weights)
    weights = np.zeros(len(words))
    weights[columns] = surrogate.coef_
    r2 = float(surrogate.score(masks[:, columns], y, sample_weight=sample_weights))
    return LimeExplanation(weights, float(surrogate.intercept_), r2, masks, y, sample_weights)


@dataclass
class ShapExplanation:
    """Shapley-value attributions for one text: one value per word.

    ``values.sum()`` equals ``full_value - empty_value`` (efficiency): the
    prediction on the whole text minus the prediction on the empty text.
    """

    values: np.ndarray
    empty_value: float
    full_value: float
    masks: np.ndarray = field(repr=False)
    probabilities: np.ndarray = field(repr=False)
    sample_weights: np.ndarray = field(repr=False)


MAX_ENUMERATED_WORDS = 14


def all_coalitions(n_words):
    """Every mask of ``n_words`` words except the empty and the full one: 2**n - 2 rows."""
    if not isinstance(n_words, (int, np.integer)) or not 2 <= n_words <= MAX_ENUMERATED_WORDS:
        raise ValueError(f"n_words must be a whole number from 2 to {MAX_ENUMERATED_WORDS} "
                         f"(there are 2**n_words coalitions), got {n_words!r}.")
    codes = np.arange(1, 2 ** n_words - 1)
    return ((codes[:, None] >> np.arange(n_words)) & 1).astype(int)


def shapley_kernel(masks):
    """The Shapley kernel weight of each mask (Lundberg & Lee 2017):
    (n - 1) / (C(n, s) * s * (n - s)) for a mask that keeps s of n words.

    Weighted least squares with these weights over *all* coalitions, with the
    efficiency constraint, gives the exact Shapley values. The empty and the full
    mask have infinite weight: they enter as the constraint, not as samples.
    """
    from scipy.special import comb

    masks = np.asarray(masks)
    if masks.ndim != 2 or not np.isin(masks, (0, 1)).all():
        raise ValueError(f"masks must be a 2-D array of 0s and 1s (one row per sample, one column per word), "
                         f"got shape {masks.shape}.")
    n, size = masks.shape[1], masks.sum(1)
    if ((size == 0) | (size == n)).any():
        raise ValueError("the empty and the full mask have infinite Shapley kernel weight; "
                         "leave them out (they enter through the efficiency constraint).")
    return (n - 1) / (comb(n, size) * size * (n - size))


def _efficient_fit(masks, y, sample_weights, empty_value, full_value):
    """Weighted least squares of y - empty_value on the masks, with the
    coefficients constrained to sum to full_value - empty_value."""
    from sklearn.linear_model import LinearRegression

    masks = np.asarray(masks, dtype=float)
    total = full_value - empty_value
    # Substitute the last coefficient: phi_n = total - sum(phi_1 .. phi_{n-1}).
    X = masks[:, :-1] - masks[:, -1:]
    target = y - empty_value - masks[:, -1] * total
    fit = LinearRegression(fit_intercept=False).fit(X, target, sample_weight=sample_weights)
    return np.append(fit.coef_, total - fit.coef_.sum())


def kernel_shap(predict_proba, words, target, n_samples=500, seed=0, exact=False):
    """KernelSHAP (Lundberg & Lee 2017) for text: the lesson's LIME with three changes.

    1. Each sample is weighted by the Shapley kernel instead of LIME's proximity
       kernel. The masks are LIME's (``lime_masks``: the number of words removed
       is uniform), so each weight is divided by the probability of drawing that
       mask, 1 / ((n - 1) C(n, s)); the result is (n - 1)**2 / (s (n - s)).
    2. No ridge penalty: plain weighted least squares.
    3. The efficiency constraint: the values sum to p(target | text) minus
       p(target | empty text), where removing every word gives the empty text.

    With ``exact=True`` every coalition is used once, with the Shapley kernel
    itself, and the result equals the exact Shapley values (``shapley_values``).
    """
    words = _check_words(words, minimum=2)
    n = len(words)
    if exact:
        masks = all_coalitions(n)
        sample_weights = shapley_kernel(masks)
    else:
        validate.count(n_samples, "n_samples", minimum=10)
        masks = lime_masks(n, n_samples + 1, seed)[1:]  # row 0 of lime_masks is the full text
        size = masks.sum(1)
        sample_weights = (n - 1) ** 2 / (size * (n - size))
    texts = [join_words([w for w, keep in zip(words, row) if keep]) for row in masks]
    ends = _probabilities(predict_proba, [join_words(words), ""], target)[:, target]
    y = _probabilities(predict_proba, texts, target)[:, target]
    values = _efficient_fit(masks, y, sample_weights, ends[1], ends[0])
    return ShapExplanation(values, float(ends[1]), float(ends[0]), masks, y, sample_weights)


def shapley_values(predict_proba, words, target):
    """Exact Shapley values of each word, by enumerating all 2**n subsets of words.

    phi_i = sum over subsets S without i of |S|! (n - |S| - 1)! / n! * (v(S + i) - v(S)),
    where v(S) is p(target) for the text made of the words in S, in their order
    (v of the empty set is p(target | "")). Costs 2**n texts: n is at most 14.
    """
    from math import factorial

    words = _check_words(words, minimum=2)
    n = len(words)
    if n > MAX_ENUMERATED_WORDS:
        raise ValueError(f"exact Shapley values need 2**n texts; {n} words is too many "
                         f"(at most {MAX_ENUMERATED_WORDS}). Use kernel_shap for longer texts.")
    codes = np.arange(2 ** n)
    masks = (codes[:, None] >> np.arange(n)) & 1
    texts = [join_words([w for w, keep in zip(words, row) if keep]) for row in masks]
    v = _probabilities(predict_proba, texts, target)[:, target]
    size = masks.sum(1)
    weight = np.array([factorial(s) * factorial(n - s - 1) / factorial(n) if s < n else 0.0 for s in size])
    values = np.zeros(n)
    for i in range(n):
        without = masks[:, i] == 0
        values[i] = np.sum(weight[without] * (v[codes[without] | (1 << i)] - v[without]))
    return values


# ---------------------------------------------------------------------------
# Gradient-based methods on the lesson's SentimentClassifier
# ---------------------------------------------------------------------------

def _check_classifier(classifier):
    for attribute in ("tokenizer", "word_embeddings", "encoder", "labels"):
        if not hasattr(classifier, attribute):
            raise TypeError("classifier must be the lesson's SentimentClassifier "
                            "(xai_lesson.text_classifier.build_sentiment_classifier).")


def word_gradient_x_input(classifier, words, target, baseline=None):
    """Gradient x input at the word embeddings, summed over the embedding dimension
    and over the word pieces of each word: one score per word.

    With ``baseline=None`` this is g . e, the plain formulation. On MiniLM (and any
    BERT-style encoder) it is degenerate: the embedding LayerNorm ignores a rescaling of
    its input e + position + segment, so g . (e + position + segment) = 0 and g . e is
    just -g . (position + segment). With ``baseline="pad"`` it is g . (e - e_[PAD]),
    the first-order estimate of replacing each word piece by ``[PAD]`` (the baseline of
    ``word_integrated_gradients``).
    """
    from xai_lesson.text_classifier import MAX_TOKENS

    _check_classifier(classifier)
    words = _check_words(words)
    validate.class_index(target, len(classifier.labels))
    if baseline not in (None, "pad"):
        raise ValueError(f"baseline must be None (plain gradient x input) or 'pad', got {baseline!r}.")
    batch = classifier.tokenizer(words, is_split_into_words=True, truncation=True, max_length=MAX_TOKENS,
                                 return_tensors="pt")
    embeddings = classifier.word_embeddings(batch["input_ids"]).detach().requires_grad_(True)
    logits = classifier(inputs_embeds=embeddings, attention_mask=batch["attention_mask"])
    (gradient,) = torch.autograd.grad(logits[0, target], embeddings)
    difference = embeddings.detach()
    if baseline == "pad":
        difference = difference - classifier.word_embeddings(torch.tensor([classifier.tokenizer.pad_token_id])).detach()
    return _per_word((gradient * difference).sum(-1)[0].detach().numpy(), batch, words)


def _per_word(per_token, batch, words):
    """Token scores summed per word; a word the model never sees (cut, or no tokens) gets NaN, with a warning."""
    from xai_lesson.text_classifier import MAX_TOKENS

    scores = np.zeros(len(words))
    seen = np.zeros(len(words), dtype=bool)
    for position, word in enumerate(batch.word_ids(0)):
        if word is not None:
            scores[word] += per_token[position]
            seen[word] = True
    if not seen.all():
        first = int(np.flatnonzero(~seen)[0])
        encodings = getattr(batch, "encodings", None)
        if encodings is None or encodings[0].overflowing:
            reason = (f"The text is longer than {MAX_TOKENS} tokens: the model never sees its last "
                      f"{int((~seen).sum())} words (from word {first}, {words[first]!r})")
        else:
            reason = f"The word {words[first]!r} (word {first}) gives no tokens, so the model never sees it"
        warnings.warn(f"{reason}, so they get the score NaN rather than 0. Shorten the text, or explain it "
                      "one sentence at a time.", UserWarning, stacklevel=3)
        scores[~seen] = np.nan
    return scores


def word_integrated_gradients(classifier, words, target, steps=32):
    """Integrated Gradients at the word embeddings, summed per word, as in episode 2.

    The baseline replaces every word piece by the ``[PAD]`` embedding and keeps
    ``[CLS]`` and ``[SEP]``; the target is the class logit. Returns the scores per
    word and the completeness gap |sum - (logit(x) - logit(baseline))|, in logits
    (absolute, because the difference of logits can be near zero).
    """
    from xai_lesson import saliency
    from xai_lesson.text_classifier import MAX_TOKENS

    _check_classifier(classifier)
    words = _check_words(words)
    validate.class_index(target, len(classifier.labels))
    validate.count(steps, "steps")
    batch = classifier.tokenizer(words, is_split_into_words=True, truncation=True, max_length=MAX_TOKENS,
                                 return_tensors="pt")
    mask = batch["attention_mask"]
    word_ids = np.array([-1 if w is None else w for w in batch.word_ids(0)])
    embeddings = classifier.word_embeddings(batch["input_ids"]).detach()
    pad = classifier.word_embeddings(torch.tensor([classifier.tokenizer.pad_token_id])).detach()
    baseline = embeddings.clone()
    baseline[0, torch.from_numpy(word_ids >= 0)] = pad

    def logits(e):
        return classifier(inputs_embeds=e, attention_mask=mask.expand(len(e), -1))

    attributions = saliency.integrated_gradients(logits, embeddings, int(target), baseline=baseline, steps=steps)
    per_token = attributions.sum(-1)[0].detach().numpy()
    with torch.no_grad():
        delta = (logits(embeddings)[0, target] - logits(baseline)[0, target]).item()
    return _per_word(per_token, batch, words), abs(per_token.sum() - delta)


def whole_word_vocabulary(tokenizer, min_length=3):
    """Token ids of the tokenizer's alphabetic, lowercase, whole-word tokens (no '##' pieces)."""
    validate.count(min_length, "min_length")
    ids = sorted(i for token, i in tokenizer.get_vocab().items()
                 if len(token) >= min_length and token.isascii() and token.isalpha() and token.islower())
    validate.not_empty(len(ids), "the whole-word vocabulary", f"no token has {min_length} or more lowercase letters.")
    return torch.tensor(ids)


def first_order_flip_scores(gradient, embeddings, vocabulary_embeddings):
    """First-order change of the objective when token i is swapped for candidate v:
    (e_v - e_i) . grad_i. Shapes: (T, d), (T, d), (V, d) -> (T, V)."""
    shapes = [tuple(t.shape) if torch.is_tensor(t) else None for t in (gradient, embeddings, vocabulary_embeddings)]
    if (None in shapes or any(len(s) != 2 for s in shapes) or shapes[0] != shapes[1]
            or shapes[2][1] != shapes[0][1]):
        raise ValueError(f"need tensors of shapes (T, d), (T, d) and (V, d); got {shapes}.")
    return gradient @ vocabulary_embeddings.T - (gradient * embeddings).sum(-1, keepdim=True)


@dataclass
class HotFlipResult:
    """A greedy word-substitution attack on one text."""

    original: str
    text: str
    label: int
    edits: list
    probabilities: list
    success: bool


def _editable_positions(tokenizer, ids):
    tokens = tokenizer.convert_ids_to_tokens(ids.tolist())
    return [i for i in range(1, len(tokens) - 1)
            if tokens[i].isalpha() and tokens[i].isascii() and not tokens[i + 1].startswith("##")]


@torch.no_grad()
def _label_probability(classifier, ids, mask, label):
    return classifier(input_ids=ids, attention_mask=mask).softmax(-1)[:, label]


def _check_attack_text(text):
    """One non-empty text to attack (``hotflip`` and its random baseline ``attacks.random_swaps``)."""
    if not isinstance(text, str):
        raise TypeError(f"text must be a string, got {type(text).__name__}; attack one text at a time.")
    if not text.strip():
        raise ValueError("text is empty: there is nothing to attack.")


def _check_min_similarity(min_similarity):
    """None, or a cosine similarity from -1 to 1 (the swap constraint of ``hotflip`` and ``attacks.random_swaps``)."""
    if min_similarity is not None and not (isinstance(min_similarity, (int, float)) and -1 <= min_similarity <= 1):
        raise ValueError(f"min_similarity must be None or a cosine similarity from -1 to 1, got {min_similarity!r}.")


def hotflip(classifier, text, max_edits=3, n_candidates=10, vocabulary=None, min_similarity=None, stop_below=None):
    """Greedy word substitution guided by gradients, in the spirit of HotFlip (Ebrahimi et al. 2018).

    At each step, rank every (position, replacement) pair by the first-order
    estimate of how much it lowers log p(predicted class), try the
    ``n_candidates`` best for real, and keep the one that lowers it most. Only
    single-token alphabetic words are replaced, by whole-word tokens from
    ``vocabulary`` (default ``whole_word_vocabulary``), each position at most once.
    Stops as soon as the prediction flips, or after ``max_edits`` edits. With
    ``stop_below``, it goes on after a flip until p(original class) falls below
    ``stop_below`` (for example ``0.5 - margin``, so that the attack is held to the
    margin it is judged by), or the edits run out.

    With ``min_similarity``, a word may only be replaced by a candidate whose input
    embedding has at least that cosine similarity to the original word's: a simple
    meaning-preservation constraint. The attack stops when no candidate is left.
    """
    _check_classifier(classifier)
    _check_attack_text(text)
    if not isinstance(max_edits, int) or max_edits < 1 or not isinstance(n_candidates, int) or n_candidates < 1:
        raise ValueError(f"max_edits and n_candidates must be whole numbers of at least 1, "
                         f"got {max_edits!r} and {n_candidates!r}.")
    _check_min_similarity(min_similarity)
    if stop_below is not None and not (isinstance(stop_below, (int, float)) and 0 < stop_below <= 1):
        raise ValueError(f"stop_below must be a probability in (0, 1], got {stop_below!r}.")
    tokenizer = classifier.tokenizer
    table = classifier.encoder.get_input_embeddings().weight.detach()
    vocabulary = whole_word_vocabulary(tokenizer) if vocabulary is None else validate.token_ids(
        vocabulary, len(table), "vocabulary")
    vocabulary_embeddings = table[vocabulary]
    ids, mask = classifier.encode([text])
    with torch.no_grad():
        first = classifier(input_ids=ids, attention_mask=mask).softmax(-1)[0]
    label = int(first.argmax())
    probabilities = [float(first[label])]
    editable = _editable_positions(tokenizer, ids[0])
    edits, flipped = [], False
    for _ in range(max_edits):
        if not editable:
            break
        embeddings = classifier.word_embeddings(ids).detach().requires_grad_(True)
        log_p = classifier(inputs_embeds=embeddings, attention_mask=mask).log_softmax(-1)[0, label]
        (gradient,) = torch.autograd.grad(log_p, embeddings)
        positions = torch.tensor(editable)
        scores = first_order_flip_scores(gradient[0, positions], embeddings[0, positions].detach(),
                                         vocabulary_embeddings)
        scores[vocabulary[None, :] == ids[0, positions][:, None]] = float("inf")  # no-op swaps
        if min_similarity is not None:
            originals = torch.nn.functional.normalize(table[ids[0, positions]], dim=-1)
            similarity = originals @ torch.nn.functional.normalize(vocabulary_embeddings, dim=-1).T
            scores[similarity < min_similarity] = float("inf")
        n_allowed = int(torch.isfinite(scores).sum())
        if n_allowed == 0:
            break
        best = scores.flatten().topk(min(n_candidates, n_allowed), largest=False).indices
        rows, columns = best // scores.shape[1], best % scores.shape[1]
        trials = ids.repeat(len(best), 1)
        trials[torch.arange(len(best)), positions[rows]] = vocabulary[columns]
        with torch.no_grad():
            trial_probs = classifier(input_ids=trials, attention_mask=mask.repeat(len(best), 1)).softmax(-1)
        choice = int(trial_probs[:, label].argmin())
        flipped = int(trial_probs[choice].argmax()) != label
        position = int(positions[rows[choice]])
        old = tokenizer.convert_ids_to_tokens(int(ids[0, position]))
        ids = trials[choice:choice + 1]
        edits.append((position, old, tokenizer.convert_ids_to_tokens(int(ids[0, position]))))
        probabilities.append(float(trial_probs[choice, label]))
        editable.remove(position)
        if flipped and (stop_below is None or probabilities[-1] < stop_below):
            break
    new_text = tokenizer.decode(ids[0, 1:int(mask[0].sum()) - 1])
    return HotFlipResult(text, new_text, label, edits, probabilities, bool(edits) and flipped)


@dataclass
class Trigger:
    """A universal trigger: tokens to prepend to any text, and the search's history."""

    ids: list
    tokens: list
    text: str
    history: list


def _prepend(ids, mask, trigger):
    trigger = torch.as_tensor(trigger).repeat(ids.shape[0], 1)
    return (torch.cat([ids[:, :1], trigger, ids[:, 1:]], 1),
            torch.cat([torch.ones_like(trigger), mask], 1))


def universal_trigger(classifier, texts, label, length=3, n_rounds=2, n_candidates=8,
                      vocabulary=None, start="the"):
    """Search for a universal adversarial trigger (Wallace et al. 2019).

    ``texts`` all belong to class ``label``. The trigger starts as ``length``
    copies of ``start``. For each trigger position in turn, average the gradient
    of the mean log p(label) over the texts, rank replacement tokens by the
    first-order estimate, try the ``n_candidates`` best on all texts, and keep
    the best one if it lowers the mean p(label). Returns the trigger and, in
    ``history``, the mean p(label) after each position update.
    """
    _check_classifier(classifier)
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string: wrap it as [text].")
    texts = list(texts)
    if len(texts) < 2 or not all(isinstance(t, str) and t.strip() for t in texts):
        raise ValueError(f"texts must be a list of at least 2 non-empty strings of the same class, "
                         f"got {len(texts)} item(s).")
    if not isinstance(length, int) or length < 1 or not isinstance(n_rounds, int) or n_rounds < 1:
        raise ValueError(f"length and n_rounds must be whole numbers of at least 1, got {length!r}, {n_rounds!r}.")
    validate.class_index(label, len(classifier.labels), "label")
    tokenizer = classifier.tokenizer
    if start not in tokenizer.get_vocab():
        raise ValueError(f"start word {start!r} is not a single token of the tokenizer; try 'the'.")
    validate.count(n_candidates, "n_candidates")
    table = classifier.encoder.get_input_embeddings().weight.detach()
    vocabulary = whole_word_vocabulary(tokenizer) if vocabulary is None else validate.token_ids(
        vocabulary, len(table), "vocabulary")
    ids, mask = classifier.encode(texts)
    trigger = torch.full((length,), tokenizer.convert_tokens_to_ids(start))
    with torch.no_grad():
        current = float(_label_probability(classifier, *_prepend(ids, mask, trigger), label).mean())
    history = [current]
    for _ in range(n_rounds):
        for slot in range(length):
            full_ids, full_mask = _prepend(ids, mask, trigger)
            embeddings = classifier.word_embeddings(full_ids).detach().requires_grad_(True)
            log_p = classifier(inputs_embeds=embeddings, attention_mask=full_mask).log_softmax(-1)[:, label]
            (gradient,) = torch.autograd.grad(log_p.mean(), embeddings)
            g = gradient[:, 1 + slot].mean(0)
            scores = (table[vocabulary] - table[trigger[slot]]) @ g
            scores[vocabulary == trigger[slot]] = float("inf")
            candidates = vocabulary[scores.topk(min(n_candidates, len(vocabulary)), largest=False).indices]
            for candidate in candidates:
                trial = trigger.clone()
                trial[slot] = candidate
                p = float(_label_probability(classifier, *_prepend(ids, mask, trial), label).mean())
                if p < current:
                    trigger, current = trial, p
            history.append(current)
    tokens = tokenizer.convert_ids_to_tokens(trigger.tolist())
    return Trigger(trigger.tolist(), tokens, " ".join(tokens), history)


def flip_rate(predict_proba, texts, label, prefix=""):
    """Fraction of ``texts`` (all of class ``label``) not predicted as ``label`` once
    ``prefix`` is put in front of them."""
    if isinstance(texts, str):
        raise TypeError("texts must be a list of strings, not one string: wrap it as [text].")
    texts = list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a non-empty list of strings.")
    if not isinstance(prefix, str):
        raise TypeError(f"prefix must be a string (the trigger's text), got {type(prefix).__name__}.")
    joined = [f"{prefix} {t}".strip() for t in texts]
    probs = _probabilities(predict_proba, joined, label)
    return float((probs.argmax(1) != label).mean())
