"""Probing: what information can be read out of each layer of a model?

A *probe* is a small classifier trained on a layer's hidden states to predict a
property, such as sentiment or part of speech. High probe accuracy shows that the
property can be decoded from that layer; it does not show that the model uses it.

* ``hidden_states`` runs a BERT-style encoder once and returns one array per layer
  (the embedding output plus every transformer layer, the last one included).
* ``cached_hidden_states`` does the same, but saves the arrays under
  ``xai_lesson.models.cache_dir()`` as ``.npy`` files and reuses them.
* ``linear_probe`` and ``mlp_probe`` build the scikit-learn probes.
* ``probe_layers`` cross-validates a probe on every layer.
* ``control_labels`` and ``selectivity`` implement the control tasks of
  Hewitt & Liang (2019).
"""

import hashlib
import json

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from xai_lesson import files, validate
from xai_lesson.text_classifier import mean_pool

POOLINGS = ("mean", "tokens")
# Part of every cache key: raise it when hidden_states changes what it computes,
# so that caches written by an older version are not reused.
CACHE_VERSION = 2
WORD_PIECES = ("first", "mean")


def _check_inputs(texts, pooling, word_piece, batch_size):
    if pooling not in POOLINGS:
        raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}. Use 'mean' for one "
                         "vector per text, 'tokens' for one vector per word.")
    if word_piece not in WORD_PIECES:
        raise ValueError(f"word_piece must be one of {WORD_PIECES}, got {word_piece!r}.")
    validate.count(batch_size, "batch_size")
    if isinstance(texts, str):
        raise TypeError("pass a list of texts, not one string: wrap it as [text].")
    texts = list(texts)
    if not texts:
        raise ValueError("texts is empty: pass at least one text.")
    if pooling == "mean":
        if not all(isinstance(t, str) for t in texts):
            raise TypeError("with pooling='mean', texts must be a list of strings.")
    else:
        if not all(isinstance(t, (list, tuple)) and t and all(isinstance(w, str) for w in t)
                   for t in texts):
            raise TypeError("with pooling='tokens', texts must be pre-split into words: a list of "
                            "non-empty lists of strings, e.g. [text.split() for text in texts].")
        texts = [list(t) for t in texts]
        for i, words in enumerate(texts):
            blank = [j for j, w in enumerate(words) if not w.strip()]
            if blank:
                raise ValueError(f"text {i} has an empty or blank word at position {blank[0]} ({words[blank[0]]!r}): "
                                 "it gives no tokens, so it has no hidden state. Drop empty words, e.g. "
                                 "[w for w in words if w.strip()].")
    return texts


def _check_tokenizer(tokenizer, pooling):
    if pooling == "tokens" and not getattr(tokenizer, "is_fast", False):
        raise TypeError("pooling='tokens' needs a fast (Rust) tokenizer to map word pieces to words: "
                        "load it with AutoTokenizer.from_pretrained(path, use_fast=True).")


def _length(text):
    """A cheap stand-in for a text's number of tokens, used to batch texts of similar length."""
    return len(text) if isinstance(text, str) else sum(len(word) + 1 for word in text)


@torch.no_grad()
def hidden_states(model, tokenizer, texts, pooling="mean", batch_size=64, word_piece="first",
                  max_length=256):
    """Run ``model`` over ``texts`` once and return a list with one NumPy array per layer.

    The list has ``config.num_hidden_layers + 1`` entries: the embedding output
    (layer 0) and the output of every transformer layer, the last one included.

    * ``pooling="mean"``: ``texts`` is a list of strings. Each array has shape
      ``(len(texts), hidden_size)``: the average of the token states of each text
      over its real tokens (the attention mask gives padding zero weight; the
      special tokens [CLS] and [SEP] are included, as in sentence-transformers).
    * ``pooling="tokens"``: ``texts`` is a list of pre-split word lists. Each array
      has shape ``(total number of words, hidden_size)``, one row per word, in
      order: all words of text 0, then all words of text 1, and so on. A word cut
      into several word pieces is represented by its first piece
      (``word_piece="first"``) or by the mean of its pieces (``word_piece="mean"``).

    Texts are batched by length, so that little time goes into padding; the rows
    come back in the order of ``texts``. With ``pooling="mean"``, a text longer than
    ``max_length`` tokens is cut; with ``pooling="tokens"`` that raises an error,
    because words would go missing.
    """
    texts = _check_inputs(texts, pooling, word_piece, batch_size)
    _check_tokenizer(tokenizer, pooling)
    _check_max_length(model, max_length)
    sizes = [1 if pooling == "mean" else len(t) for t in texts]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    order = sorted(range(len(texts)), key=lambda i: _length(texts[i]))
    per_layer = None
    with validate.kept_as_found(model):
        model.eval()
        for start in range(0, len(order), batch_size):
            indices = order[start:start + batch_size]
            chunk = [texts[i] for i in indices]
            batch = tokenizer(chunk, padding=True, truncation=True, max_length=max_length,
                              return_tensors="pt", is_split_into_words=(pooling == "tokens"))
            inputs = {k: v for k, v in batch.items()
                      if k in ("input_ids", "attention_mask", "token_type_ids")}
            layers = model(**inputs, output_hidden_states=True).hidden_states
            if per_layer is None:
                per_layer = [np.empty((offsets[-1], hidden.shape[-1]), dtype=np.float32)
                             for hidden in layers]
            if pooling == "mean":
                rows = np.array(indices)
                for store, hidden in zip(per_layer, layers):
                    store[rows] = mean_pool(hidden, batch["attention_mask"]).numpy()
                continue
            for row, index in enumerate(indices):
                groups = [[] for _ in texts[index]]
                for position, word in enumerate(batch.word_ids(row)):
                    if word is not None:
                        groups[word].append(position)
                if any(not g for g in groups):
                    raise ValueError(f"text {index} is longer than max_length={max_length} "
                                     "tokens, so some words were cut off. Raise max_length or "
                                     "shorten the text.")
                rows = slice(offsets[index], offsets[index + 1])
                for store, hidden in zip(per_layer, layers):
                    if word_piece == "first":
                        store[rows] = hidden[row, [g[0] for g in groups]].numpy()
                    else:
                        store[rows] = torch.stack([hidden[row, g].mean(0) for g in groups]).numpy()
    return per_layer


def _check_max_length(model, max_length):
    validate.count(max_length, "max_length (tokens)")
    context = getattr(getattr(model, "config", None), "max_position_embeddings", None)
    if context is not None and max_length > context:
        raise ValueError(f"max_length={max_length} is more than the model's context of {context} positions.")


def _fingerprint(model, tokenizer, texts, settings):
    """A short hash of the weights, the tokenizer, the texts and the settings."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"texts": texts, "settings": settings,
                              "vocab": len(tokenizer), "model": type(model).__name__},
                             sort_keys=True).encode())
    with torch.no_grad():
        for name, parameter in model.state_dict().items():
            digest.update(name.encode())
            digest.update(parameter.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def cached_hidden_states(name, model, tokenizer, texts, pooling="mean", batch_size=64,
                         word_piece="first", max_length=256):
    """``hidden_states``, saved once under ``cache_dir()/probing/`` as .npy files and then reused.

    ``name`` labels the cache files. The file name also holds a hash of the model's
    weights, the texts and the settings, so changing any of them computes the
    states again instead of returning stale ones. The result is the same whether
    or not the cache existed.
    """
    from xai_lesson.models import cache_dir

    if not isinstance(name, str) or not name.replace("-", "").replace("_", "").isalnum():
        raise ValueError(f"name must be a short label of letters, digits, '-' or '_', got {name!r}.")
    texts = _check_inputs(texts, pooling, word_piece, batch_size)
    _check_max_length(model, max_length)
    settings = {"pooling": pooling, "word_piece": word_piece, "max_length": max_length,
                "version": CACHE_VERSION}
    key = _fingerprint(model, tokenizer, texts, settings)
    folder = cache_dir() / "probing"
    n_layers = model.config.num_hidden_layers + 1
    paths = [folder / f"{name}-{key}-layer{i}.npy" for i in range(n_layers)]
    # A record of each file's size and SHA-256 catches a truncated or changed cache file.
    record = folder / f"{name}-{key}.json"
    cached = files.load_arrays(paths, record)
    if cached is not None:
        return cached
    states = hidden_states(model, tokenizer, texts, pooling=pooling, batch_size=batch_size,
                           word_piece=word_piece, max_length=max_length)
    files.save_arrays(paths, states, record)
    return states


def linear_probe(C=0.01, tol=1e-3, max_iter=1000):
    """A linear probe: standardise the features, then a logistic regression (no hidden layer).

    The strong L2 penalty (small ``C``) suits a few thousand examples of 384 features,
    and makes the fit converge fast. A tolerance of 1e-3 (scikit-learn's default is
    1e-4) halves the fitting time and changes accuracies by less than 0.001.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    validate.number(C, "C", minimum=0)
    validate.fraction(tol, "tol")
    validate.count(max_iter, "max_iter")
    return make_pipeline(StandardScaler(), LogisticRegression(C=C, tol=tol, max_iter=max_iter))


def mlp_probe(hidden=256, seed=0, max_iter=200, alpha=1e-4):
    """A non-linear probe: standardise, then a multi-layer perceptron with one hidden layer.

    Training stops when the accuracy on a random 10 % of the training examples has
    not improved for 10 epochs (early stopping), which keeps each fit to a second or two.
    """
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    validate.count(hidden, "hidden (units)")
    validate.count(max_iter, "max_iter")
    validate.number(alpha, "alpha", minimum=0)

    return make_pipeline(StandardScaler(), MLPClassifier(hidden_layer_sizes=(hidden,), alpha=alpha,
                                                         early_stopping=True, max_iter=max_iter,
                                                         random_state=seed))


def _check_layers(features_per_layer, labels):
    if isinstance(features_per_layer, np.ndarray) and features_per_layer.ndim == 2:
        raise TypeError("features_per_layer must be a list of 2-D arrays, one per layer; "
                        "for a single layer pass [features].")
    layers = [np.asarray(f) for f in features_per_layer]
    labels = np.asarray(labels)
    if not layers:
        raise ValueError("features_per_layer is empty: pass one (examples, features) array per layer.")
    for i, f in enumerate(layers):
        if f.ndim != 2 or f.shape[0] != len(labels):
            raise ValueError(f"layer {i} has shape {f.shape}; expected ({len(labels)}, features), "
                             f"one row per label.")
        validate.finite(f, f"layer {i}")
    if len(np.unique(labels)) < 2:
        raise ValueError("labels hold a single class: a probe needs at least two.")
    return layers, labels


def probe_layers(features_per_layer, labels, cv=5, seed=0, probe=linear_probe, groups=None):
    """Cross-validated probe accuracy on every layer.

    Returns ``(mean, std)``: two arrays with one entry per layer, the mean and
    the standard deviation of the accuracy over the ``cv`` folds. The folds are
    the same for every layer. They are stratified by label, or, when ``groups`` is
    given (for example the sentence each word comes from), no group is split
    between training and test folds. ``probe`` is a function that returns a fresh
    scikit-learn classifier (default: ``linear_probe``).
    """
    from sklearn.model_selection import GroupKFold, StratifiedKFold, cross_val_score

    layers, labels = _check_layers(features_per_layer, labels)
    if not isinstance(cv, int) or cv < 2:
        raise ValueError(f"cv must be an int of 2 or more (the number of folds), got {cv!r}.")
    if groups is None:
        counts = np.unique(labels, return_counts=True)[1]
        if counts.min() < cv:
            raise ValueError(f"the rarest class has {counts.min()} examples, fewer than cv={cv} "
                             "folds. Lower cv, drop rare classes, or pass groups.")
        splits = list(StratifiedKFold(cv, shuffle=True, random_state=seed).split(layers[0], labels))
    else:
        groups = np.asarray(groups)
        if len(groups) != len(labels):
            raise ValueError(f"groups has {len(groups)} entries; expected one per label ({len(labels)}).")
        splits = list(GroupKFold(cv, shuffle=True, random_state=seed).split(layers[0], labels, groups))
    means, stds = [], []
    # Probes are small: one BLAS thread fits them fastest, and several threads on a
    # busy machine can make them many times slower.
    with threadpool_limits(limits=1, user_api="blas"):
        for features in layers:
            scores = cross_val_score(probe(), features, labels, cv=splits)
            means.append(scores.mean())
            stds.append(scores.std())
    return np.array(means), np.array(stds)


def control_labels(words, labels, seed=0, lowercase=True):
    """A control task (Hewitt & Liang 2019): give every word *type* one random label.

    Each distinct word (lower-cased by default) gets a label drawn at random from
    the empirical distribution of ``labels``, and keeps it wherever it occurs. A
    probe can only do well on this task by memorising word identities, so its
    accuracy measures how much the probe itself can learn.
    """
    words = list(words)
    labels = np.asarray(labels)
    if len(words) != len(labels):
        raise ValueError(f"need one label per word: got {len(words)} words and {len(labels)} labels.")
    if not words:
        raise ValueError("words is empty.")
    rng = np.random.default_rng(seed)
    keys = [w.lower() if lowercase else w for w in words]
    types = sorted(set(keys))
    drawn = rng.choice(labels, size=len(types), replace=True)
    lookup = dict(zip(types, drawn))
    return np.array([lookup[k] for k in keys])


def selectivity(task_accuracy, control_accuracy):
    """Selectivity = task accuracy - control accuracy (element-wise, e.g. per layer)."""
    task = np.asarray(task_accuracy, dtype=float)
    control = np.asarray(control_accuracy, dtype=float)
    if task.shape != control.shape:
        raise ValueError(f"task and control accuracies must have the same shape, got "
                         f"{task.shape} and {control.shape}.")
    return task - control


# ---------------------------------------------------------------------------
# Baselines for word-level probes, paired comparisons, selectivity sweeps and
# the projection intervention (added for issue 16).
# ---------------------------------------------------------------------------


def cv_splits(labels, cv=5, seed=0, groups=None):
    """The (train, test) index pairs that ``probe_layers`` uses for the same arguments.

    Use them to score other models (baselines, other probes) on exactly the same
    folds, so that the comparison is paired fold by fold.
    """
    from sklearn.model_selection import GroupKFold, StratifiedKFold

    labels = np.asarray(labels)
    if not isinstance(cv, int) or cv < 2:
        raise ValueError(f"cv must be an int of 2 or more (the number of folds), got {cv!r}.")
    if groups is None:
        return list(StratifiedKFold(cv, shuffle=True, random_state=seed).split(labels, labels))
    groups = np.asarray(groups)
    if len(groups) != len(labels):
        raise ValueError(f"groups has {len(groups)} entries; expected one per label ({len(labels)}).")
    return list(GroupKFold(cv, shuffle=True, random_state=seed).split(labels, labels, groups))


def most_frequent_tag(train_words, train_tags, test_words, lowercase=True):
    """The most-frequent-tag-per-word baseline: no model, only a lookup table.

    Each test word gets the tag it had most often in training. A word never seen
    in training gets the most frequent tag overall. Ties go to the tag that sorts
    first, so the result does not depend on the order of the data.
    Returns ``(predicted_tags, seen)``: an array of tags and a boolean array that
    is True where the test word occurred in training.
    """
    from collections import Counter

    train_words, test_words = list(train_words), list(test_words)
    train_tags = np.asarray(train_tags)
    if len(train_words) != len(train_tags):
        raise ValueError(f"need one tag per training word: got {len(train_words)} words and "
                         f"{len(train_tags)} tags.")
    if not train_words:
        raise ValueError("train_words is empty: the baseline needs training words to count.")

    def key(word):
        return word.lower() if lowercase else word

    counts = {}
    for word, tag in zip(train_words, train_tags):
        counts.setdefault(key(word), Counter())[tag] += 1
    overall = Counter(train_tags.tolist())
    default = min(overall, key=lambda tag: (-overall[tag], tag))
    lookup = {w: min(c, key=lambda tag: (-c[tag], tag)) for w, c in counts.items()}
    predicted = np.array([lookup.get(key(w), default) for w in test_words])
    seen = np.array([key(w) in lookup for w in test_words], dtype=bool)
    return predicted, seen


def corrected_paired_interval(differences, test_fraction, confidence=0.95):
    """A confidence interval for the mean of paired cross-validation differences.

    ``differences`` holds, fold by fold, score A minus score B on the same folds.
    Folds share training examples, so their scores are not independent and a plain
    t-interval is too narrow. The corrected resampled t-test of Nadeau & Bengio (2003),
    derived for repeated random train/test splits, multiplies the variance by
    ``1/k + n_test/n_train`` for ``k`` differences; ``test_fraction`` is n_test / n_train
    (0.25 for 5 folds). Using it for k-fold and repeated k-fold cross-validation (pass
    all r x k differences of r repetitions) is the heuristic of Bouckaert & Frank (2004),
    with k - 1 (or r x k - 1) degrees of freedom. Returns ``(mean, low, high)``.
    """
    from scipy import stats

    d = np.asarray(differences, dtype=float)
    if d.ndim != 1 or len(d) < 2:
        raise ValueError(f"need one difference per fold (at least 2), got shape {d.shape}.")
    validate.finite(d, "differences")
    validate.fraction(test_fraction, "test_fraction (n_test / n_train, 0.25 for 5 folds)", one_allowed=True)
    validate.fraction(confidence, "confidence")
    k = len(d)
    se = np.sqrt((1 / k + test_fraction) * d.var(ddof=1))
    half = stats.t.ppf(0.5 + confidence / 2, df=k - 1) * se
    return d.mean(), d.mean() - half, d.mean() + half


def selectivity_sweep(features, task_labels, control_labels, make_probe, values, train, test):
    """Task accuracy, control accuracy and selectivity for a probe at several settings.

    ``make_probe(value)`` returns a fresh classifier for one setting (for example
    one regularisation strength). Every setting is trained on the rows ``train``
    and scored on the rows ``test``, for both tasks, so the points are paired.
    Returns a dict of arrays with keys ``"task"``, ``"control"`` and ``"selectivity"``
    (one entry per setting), and ``"task_correct"`` and ``"control_correct"``: boolean
    arrays (settings, test rows), True where the probe got that row right, for paired
    comparisons of two settings on the same rows.
    """
    features = np.asarray(features)
    task_labels, control_labels = np.asarray(task_labels), np.asarray(control_labels)
    if features.ndim != 2 or not len(features) == len(task_labels) == len(control_labels):
        raise ValueError(f"need a 2-D feature array with one row per label; got {features.shape}, "
                         f"{len(task_labels)} task and {len(control_labels)} control labels.")
    values = list(values)
    if not values:
        raise ValueError("values is empty: pass the settings to sweep, e.g. [0.001, 0.01, 0.1].")
    validate.finite(features, "features")
    rows = np.arange(len(features))
    try:
        train, test = rows[train], rows[test]
    except IndexError as error:
        raise ValueError(f"train and test must be row indices (or masks) of the {len(rows)} rows: {error}.") from None
    validate.not_empty(len(train), "train", "pass the rows to fit on.")
    validate.not_empty(len(test), "test", "pass the rows to score on.")
    shared = np.intersect1d(train, test)
    if len(shared):
        raise ValueError(f"train and test share {len(shared)} rows: scoring on training rows reports training "
                         "accuracy, not how well the probe generalises. Use disjoint rows, e.g. from cv_splits.")
    task, control = [], []
    with threadpool_limits(limits=1, user_api="blas"):
        for value in values:
            for labels, out in ((task_labels, task), (control_labels, control)):
                out.append(make_probe(value).fit(features[train], labels[train])
                           .predict(features[test]) == labels[test])
    task, control = np.array(task), np.array(control)
    return {"task": task.mean(1), "control": control.mean(1), "selectivity": task.mean(1) - control.mean(1),
            "task_correct": task, "control_correct": control}


def probe_directions(fitted_probe):
    """The directions in the raw feature space that a fitted linear probe reads.

    ``fitted_probe`` is a fitted ``linear_probe()`` (a StandardScaler followed by a
    LogisticRegression). The scaler divides feature j by its standard deviation, so
    weight j acts on the raw feature as ``coef[j] / scale[j]``. Returns an array of
    shape (n_directions, n_features): one row for a two-class probe, one per class
    otherwise.
    """
    scaler, regression = fitted_probe[0], fitted_probe[-1]
    if not hasattr(regression, "coef_"):
        raise TypeError("fitted_probe must be a fitted linear_probe(): call .fit(features, labels) first.")
    scale = getattr(scaler, "scale_", None)
    return regression.coef_ / (scale if scale is not None else 1.0)


def nullspace_projection(directions):
    """The matrix P that removes ``directions`` from a vector: ``x @ P`` has no component along them.

    P = I - Q Q^T, where the columns of Q are an orthonormal basis of the directions'
    span. Projecting out a linear probe's direction(s) makes that probe's output
    constant: one step of iterative nullspace projection (INLP; Ravfogel et al. 2020),
    a single-direction ablation. A new probe can often still read the property.
    Amnesic probing (Elazar et al. 2021) iterates: fit a probe on ``x @ P``, add its
    direction (taken inside the remaining space, ``direction @ P``) to
    ``directions``, rebuild P, until a fresh probe is near chance.
    """
    directions = np.atleast_2d(np.asarray(directions, dtype=np.float64))
    if directions.ndim != 2 or directions.shape[0] > directions.shape[1]:
        raise ValueError(f"directions must be (n_directions, dim) with n_directions <= dim; "
                         f"got shape {directions.shape}.")
    if not np.all(np.isfinite(directions)) or np.any(np.linalg.norm(directions, axis=1) == 0):
        raise ValueError("every direction must be finite and non-zero.")
    unit = directions / np.linalg.norm(directions, axis=1, keepdims=True)
    singular = np.linalg.svd(unit, compute_uv=False)
    if singular[-1] < 1e-3 * singular[0]:
        raise ValueError(f"the {len(directions)} directions are (nearly) linearly dependent, for example a "
                         "direction given twice, so they span fewer dimensions and the projection would "
                         "remove a direction you did not ask for. Give independent directions.")
    basis, _ = np.linalg.qr(directions.T)
    return np.eye(directions.shape[1]) - basis @ basis.T


def random_directions(rank, dim, n, seed=0):
    """``n`` random sets of ``rank`` directions in ``dim`` dimensions (uniform on the sphere)."""
    if not (isinstance(rank, int) and isinstance(dim, int) and isinstance(n, int)) or \
            not 1 <= rank <= dim or n < 1:
        raise ValueError(f"need ints with 1 <= rank <= dim and n >= 1; got rank={rank!r}, dim={dim!r}, n={n!r}.")
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(rank, dim)) for _ in range(n)]


class project_layer_output:
    """Context manager: while active, the output of transformer layer ``layer`` is projected.

    ``layer`` counts as in ``hidden_states``: 1 is the output of the first
    transformer layer, so hidden state ``layer`` becomes ``hidden @ projection`` at
    every token, and all later layers run from the projected state. Layer 0 (the
    embedding output) is not supported. Note that ``output_hidden_states`` still
    reports layer ``layer`` itself unprojected (transformers records it before this
    hook replaces it); the layers after it receive the projected state.

        with probing.project_layer_output(encoder, 3, P):
            probabilities = classifier.predict_proba(texts)
    """

    def __init__(self, model, layer, projection):
        blocks = model.encoder.layer
        if not isinstance(layer, int) or not 1 <= layer <= len(blocks):
            raise ValueError(f"layer must be an int from 1 to {len(blocks)} (a transformer layer), got {layer!r}.")
        size = model.config.hidden_size
        projection = torch.as_tensor(np.asarray(projection), dtype=torch.float32)
        if projection.shape != (size, size):
            raise ValueError(f"projection must be ({size}, {size}), got {tuple(projection.shape)}.")
        self.block, self.projection, self.handle = blocks[layer - 1], projection, None

    def _hook(self, module, inputs, output):
        if isinstance(output, tuple):
            return (output[0] @ self.projection,) + tuple(output[1:])
        return output @ self.projection

    def __enter__(self):
        self.handle = self.block.register_forward_hook(self._hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()
        return False


class LayerReplay:
    """Run a classifier's encoder up to transformer layer ``layer`` once, then replay the rest.

    Measuring many projections of one layer with ``project_layer_output`` runs the
    whole encoder each time. ``LayerReplay`` runs it once, keeps the output of layer
    ``layer`` for every text (and the arguments the next layer received), and
    ``probabilities(projection)`` runs only the later layers, mean pooling and the
    head on the projected states. ``classifier`` is a
    ``xai_lesson.text_classifier.SentimentClassifier``. The result equals
    ``classifier.predict_proba(texts)`` under ``project_layer_output`` (a unit test checks).
    """

    @torch.no_grad()
    def __init__(self, classifier, texts, layer, batch_size=64):

        texts = validate.texts(texts)
        blocks = classifier.encoder.encoder.layer
        if not isinstance(layer, int) or not 1 <= layer < len(blocks):
            raise ValueError(f"layer must be an int from 1 to {len(blocks) - 1}, so that a later "
                             f"layer is left to replay; got {layer!r}.")
        self.classifier, self.blocks, self.n_texts = classifier, blocks[layer:], len(texts)
        self.batches = []
        captured = {}

        class _Captured(Exception):
            """Raised once layer ``layer + 1``'s input is captured: the rest need not run yet."""

        def capture(module, args, kwargs):
            captured["args"], captured["kwargs"] = args, kwargs
            raise _Captured

        order = np.argsort([len(text) for text in texts], kind="stable")
        handle = blocks[layer].register_forward_pre_hook(capture, with_kwargs=True)
        try:
            for start in range(0, len(texts), batch_size):
                rows = order[start:start + batch_size]
                input_ids, attention_mask = classifier.encode([texts[i] for i in rows])
                try:
                    classifier.encoder(input_ids=input_ids, attention_mask=attention_mask)
                except _Captured:
                    pass
                args, kwargs = captured["args"], captured["kwargs"]
                self.batches.append((rows, attention_mask, args[0], args[1:], kwargs))
        finally:
            handle.remove()

    @torch.no_grad()
    def probabilities(self, projection=None):
        """Class probabilities, shape (len(texts), 2), with the layer's output times ``projection``."""
        from xai_lesson.text_classifier import mean_pool

        size = self.classifier.encoder.config.hidden_size
        if projection is not None:
            projection = torch.as_tensor(np.asarray(projection), dtype=torch.float32)
            if projection.shape != (size, size):
                raise ValueError(f"projection must be ({size}, {size}), got {tuple(projection.shape)}.")
        result = np.empty((self.n_texts, 2), dtype=np.float32)
        for rows, attention_mask, states, args, kwargs in self.batches:
            hidden = states if projection is None else states @ projection
            for block in self.blocks:
                hidden = block(hidden, *args, **kwargs)
                hidden = hidden[0] if isinstance(hidden, tuple) else hidden
            logits = self.classifier.head(mean_pool(hidden, attention_mask))
            result[rows] = logits.softmax(-1).numpy()
        return result
