"""A sentiment classifier built on the MiniLM encoder, shared by the saliency and
perturbation episodes.

The encoder stays frozen. A logistic regression, fitted by scikit-learn on the
mean-pooled last-layer states of real human-rated movie-review snippets, becomes
the linear head. Training takes a few seconds on a CPU, and gradients still flow
from the logits back to the word embeddings, which is what saliency methods need.
"""

import warnings

import numpy as np
import torch
from torch import nn

from xai_lesson import validate

MAX_TOKENS = 128  # texts longer than this are cut; movie-review snippets are at most 79 tokens


def cut_texts(batch, tokenizer, texts, **kwargs):
    """Indices of the texts that ``batch`` (tokenised with truncation) cut short."""
    texts = validate.texts(texts)
    encodings = getattr(batch, "encodings", None)
    if encodings:  # fast tokenizers keep what truncation removed
        return [i for i, e in enumerate(encodings) if e.overflowing]
    full = tokenizer(texts, truncation=False, **kwargs)["input_ids"]
    return [i for i, ids in enumerate(full) if len(ids) > MAX_TOKENS]


def warn_cut(n_cut, n_texts, what="texts"):
    warnings.warn(f"{n_cut} of {n_texts} {what} are longer than {MAX_TOKENS} tokens and were cut: the words "
                  "after the cut are not seen by the model. Shorten the text, or split it into sentences.",
                  UserWarning, stacklevel=3)


def mean_pool(hidden, attention_mask):
    """Average token states over real tokens only: padding positions get zero weight."""
    if not (torch.is_tensor(hidden) and torch.is_tensor(attention_mask)) or hidden.ndim != 3 \
            or attention_mask.shape != hidden.shape[:2]:
        raise ValueError(f"need hidden states (batch, tokens, dim) and a mask (batch, tokens); got "
                         f"{tuple(hidden.shape)} and {tuple(attention_mask.shape)}.")
    weights = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class SentimentClassifier(nn.Module):
    """MiniLM encoder + mean pooling + linear head. Class 0 is negative, class 1 positive."""

    labels = ("negative", "positive")

    def __init__(self, encoder, tokenizer):
        super().__init__()
        self.encoder = encoder
        self.tokenizer = tokenizer
        self.head = nn.Linear(encoder.config.hidden_size, 2)

    def word_embeddings(self, input_ids):
        """The encoder's input embedding of each token (before position embeddings are added)."""
        return self.encoder.get_input_embeddings()(input_ids)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        """Logits of shape (batch, 2). Pass ``inputs_embeds`` instead of ``input_ids`` for gradients."""
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("pass exactly one of input_ids and inputs_embeds.")
        if attention_mask is None:
            reference = input_ids if input_ids is not None else inputs_embeds[..., 0]
            attention_mask = torch.ones(reference.shape[:2], dtype=torch.long)
        states = self.encoder(input_ids=input_ids, attention_mask=attention_mask,
                              inputs_embeds=inputs_embeds).last_hidden_state
        return self.head(mean_pool(states, attention_mask))

    def encode(self, texts):
        """Tokenise a list of strings into padded tensors (input_ids, attention_mask)."""
        texts = validate.texts(texts)
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=MAX_TOKENS, return_tensors="pt")
        cut = cut_texts(batch, self.tokenizer, texts)
        if cut:
            warn_cut(len(cut), len(texts))
        return batch["input_ids"], batch["attention_mask"]

    @torch.no_grad()
    def pooled(self, texts, batch_size=64):
        """Mean-pooled last-layer states, one row per text (in the order given), as a NumPy array.

        Texts of similar length share a batch, so little time goes into padding.
        """
        texts = validate.texts(texts)
        order = np.argsort([len(text) for text in texts], kind="stable")
        rows = np.empty((len(texts), self.encoder.config.hidden_size), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            chosen = order[start:start + batch_size]
            input_ids, attention_mask = self.encode([texts[i] for i in chosen])
            states = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            rows[chosen] = mean_pool(states, attention_mask).numpy()
        return rows

    @torch.no_grad()
    def predict_proba(self, texts, batch_size=64):
        """Class probabilities, shape (len(texts), 2): column 1 is p(positive)."""
        features = torch.from_numpy(self.pooled(texts, batch_size))
        return self.head(features).softmax(-1).numpy()


def train_sentiment_classifier(encoder, tokenizer, texts, labels, C=1.0, seed=0, features=None):
    """Fit the linear head with scikit-learn's logistic regression on frozen encoder features.

    A binary logistic regression with weights w and bias b becomes a two-logit
    head whose logit difference (positive minus negative) is exactly w.x + b.
    ``features``, if given, are the texts' mean-pooled last-layer states computed
    before (for example ``probing.cached_hidden_states(...)[-1]``); they save running
    the encoder again and must equal ``SentimentClassifier.pooled(texts)``.
    """
    from sklearn.linear_model import LogisticRegression

    from xai_lesson import validate

    texts = validate.texts(texts)
    validate.number(C, "C", minimum=0)
    labels = np.asarray(labels)
    if labels.shape != (len(texts),) or not set(np.unique(labels)) <= {0, 1}:
        raise ValueError(f"labels must be one 0/1 value per text; got {labels.shape[0] if labels.ndim else 0} "
                         f"labels with values {sorted(set(labels.ravel().tolist()))[:5]} for {len(texts)} texts.")
    classifier = SentimentClassifier(encoder, tokenizer).eval()
    if features is None:
        features = classifier.pooled(texts)
    features = np.asarray(features, dtype=np.float32)
    if features.shape != (len(texts), encoder.config.hidden_size):
        raise ValueError(f"features must have one row of {encoder.config.hidden_size} numbers per text; "
                         f"got shape {features.shape} for {len(texts)} texts.")
    regression = LogisticRegression(C=C, max_iter=2000, random_state=seed).fit(features, labels)
    weight = torch.tensor(regression.coef_[0], dtype=torch.float32)
    bias = float(regression.intercept_[0])
    with torch.no_grad():
        classifier.head.weight.copy_(torch.stack([-weight / 2, weight / 2]))
        classifier.head.bias.copy_(torch.tensor([-bias / 2, bias / 2]))
    for parameter in classifier.parameters():
        parameter.requires_grad_(False)
    return classifier


def sentiment_splits(n_train_per_class=1000, n_test_per_class=250, min_abs_rating=1.0, seed=0):
    """Balanced, disjoint train and test sets of clearly positive or negative snippets."""
    from xai_lesson import validate
    from xai_lesson.data import balanced_sample, load_sentiment

    validate.count(n_train_per_class, "n_train_per_class")
    validate.count(n_test_per_class, "n_test_per_class")
    snippets = load_sentiment(min_abs_rating=min_abs_rating)
    both = balanced_sample(snippets, n_train_per_class + n_test_per_class, seed=seed)
    labels = np.asarray(both["label"])
    test_rows = np.concatenate([np.flatnonzero(labels == value)[:n_test_per_class] for value in (0, 1)])
    train_rows = np.setdiff1d(np.arange(len(both)), test_rows)
    return both.select(train_rows), both.select(np.sort(test_rows))


def build_sentiment_classifier(n_train_per_class=1000, seed=0):
    """The lesson's sentiment classifier, as the saliency episode builds it.

    Returns ``(classifier, train, test)``: the classifier, and the datasets it was
    trained and can be evaluated on. Takes about 10 s on two CPU cores.
    """
    from xai_lesson import validate
    from xai_lesson.models import load_text_encoder

    validate.count(n_train_per_class, "n_train_per_class")
    encoder, tokenizer = load_text_encoder()
    train, test = sentiment_splits(n_train_per_class=n_train_per_class, seed=seed)
    classifier = train_sentiment_classifier(encoder, tokenizer, train["text"], train["label"], seed=seed)
    return classifier, train, test
