"""Checks for episode 07's code-along exercises: probing."""

import numpy as np
import torch

from .harness import ARRAY, Returns, Wrong, close, exercise


def _reference_masked_mean_pool(hidden, attention_mask):
    from xai_lesson.text_classifier import mean_pool
    return mean_pool(hidden, attention_mask)


def _fresh_hidden_states(seed):
    """Hidden states (texts, tokens, features) of another size for each seed, and a mask padded on the right."""
    generator = torch.Generator().manual_seed(seed)
    texts, tokens = 2 + 2 * seed, 3 + 2 * seed
    lengths = torch.randint(1, tokens + 1, (texts,), generator=generator)
    mask = (torch.arange(tokens)[None, :] < lengths[:, None]).long()
    return torch.randn(texts, tokens, 3 + seed, generator=generator), mask


@exercise("7.1", "masked_mean_pool", _reference_masked_mean_pool,
          "One vector per text, the mean over its real tokens: padding gets zero weight.",
          returns=ARRAY, fresh=_fresh_hidden_states)
def check_masked_mean_pool(learner):
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 5, 4, generator=generator)         # 3 texts, 5 token positions, 4 features
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    pooled = learner(hidden.clone(), mask.clone())
    want = _reference_masked_mean_pool(hidden, mask)
    shape = tuple(pooled.shape)
    if shape != (3, 4):
        raise Wrong(f"for 3 texts of 5 tokens with 4 features it has shape {shape}, not (3, 4)",
                    "average over dim 1, the tokens")
    if close(pooled, want):
        alone = learner(hidden[1:2, :2].clone(), mask[1:2, :2].clone())
        if not close(alone, want[1:2]):
            raise Wrong("a text gets a different vector alone than padded in a batch",
                        "give padding zero weight in both the sum and the count")
        return
    if close(pooled, hidden.mean(dim=1)):
        raise Wrong("the mean includes the padding tokens",
                    "multiply by the mask, mask = attention_mask.unsqueeze(-1).float(), and divide by mask.sum(1)")
    masked_sum = (hidden * mask.unsqueeze(-1)).sum(dim=1)
    if close(pooled, masked_sum):
        raise Wrong("it returns the sum over real tokens, not their mean", "divide by the number of real tokens, mask.sum(1)")
    if close(pooled, masked_sum / hidden.shape[1]):
        raise Wrong("it divides by the padded length, not by the number of real tokens", "divide by mask.sum(1)")
    if close(pooled, masked_sum / mask.sum()):
        raise Wrong("it divides by the number of real tokens in the whole batch",
                    "divide each text by its own count, mask.sum(1) (keep dim 1 with unsqueeze)")
    raise Wrong("the vectors are not the means over the real tokens",
                "(hidden * mask).sum(1) / mask.sum(1) with mask = attention_mask.unsqueeze(-1).float()")


def _reference_control_labels(words, labels, seed=0):
    from xai_lesson.probing import control_labels
    return control_labels(words, labels, seed=seed)


def _tagged_words(seed, n_types, n_words):
    """Words (a third of them capitalised) and skewed real labels, 80 % "NOUN"."""
    rng = np.random.default_rng(seed)
    vocabulary = [f"w{i}" for i in range(n_types)]
    words = [vocabulary[i] for i in rng.integers(0, len(vocabulary), n_words)]
    words = [w.upper() if i % 3 == 0 else w for i, w in enumerate(words)]     # the same word, capitalised
    labels = np.where(rng.random(len(words)) < 0.8, "NOUN", "VERB")           # a skewed distribution
    return words, labels


def _one_label_per_type(control, words, labels):
    """Raise Wrong unless ``control`` gives each (lower-cased) word type of ``words`` one of the ``labels``."""
    control = np.asarray(control)
    if control.shape != labels.shape:
        raise Wrong(f"it returns {control.shape[0] if control.ndim else 0} labels for {len(words)} words",
                    "return one control label per word, in order")
    if not set(control.tolist()) <= set(labels.tolist()):
        raise Wrong(f"it returns labels that are not tags, such as {sorted(set(control.tolist()) - set(labels.tolist()))[:2]}",
                    "draw each type's label from the real labels, rng.choice(labels)")
    by_type, by_exact = {}, {}
    for word, label in zip(words, control):
        by_type.setdefault(word.lower(), set()).add(label)
        by_exact.setdefault(word, set()).add(label)
    if any(len(v) > 1 for v in by_exact.values()):
        raise Wrong("the same word gets different control labels in different places",
                    "draw one label per word type (distinct word), then look each word up")
    if any(len(v) > 1 for v in by_type.values()):
        raise Wrong("'The' and 'the' get different control labels",
                    "lower-case each word before looking it up")
    return by_type


LABELS = Returns("one label per word, a NumPy array (or a list)", lambda v: isinstance(v, (np.ndarray, list)),
                 "return np.array([...]) with one control label per word, in order")


@exercise("7.2", "control_labels", _reference_control_labels,
          "Each word type gets one random label, drawn from the real labels' distribution, the same for one seed.",
          returns=LABELS, fresh=lambda seed: (*_tagged_words(10 + seed, 30 * seed, 200 * seed), seed),
          same=lambda got, want, arguments: bool(_one_label_per_type(got, *arguments[:2])), deterministic=True)
def check_control_labels(learner):
    words, labels = _tagged_words(0, 400, 3000)
    control = np.asarray(learner(list(words), labels.copy(), seed=0))
    by_type = _one_label_per_type(control, words, labels)
    type_labels = np.array([next(iter(v)) for v in by_type.values()])
    share = float(np.mean(type_labels == "NOUN"))
    if not 0.7 < share < 0.9:
        raise Wrong(f"{share:.0%} of word types get the label that 80% of the words have",
                    "draw from the real labels themselves, rng.choice(labels), not from the list of distinct tags")
    again = np.asarray(learner(list(words), labels.copy(), seed=0))
    other = np.asarray(learner(list(words), labels.copy(), seed=1))
    if not np.array_equal(control, again) or np.array_equal(control, other):
        raise Wrong("the labels do not depend on the seed alone",
                    "make a generator from the seed, rng = np.random.default_rng(seed), and draw with it")
