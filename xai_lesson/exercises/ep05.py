"""Checks for episode 05's code-along exercises: perturbations."""

import numpy as np

from .harness import ARRAY, Returns, Wrong, close, exercise


TOY_WORD_WEIGHTS = {"good": 1.5, "great": 2.0, "bad": -2.0, "not": -0.7, "!": 0.3}


def toy_predict_proba(texts):
    """A transparent three-class sentiment 'model' for the checks (negative, neutral, positive):
    the softmax of (-s, 0, s), where s is the sum of the text's word weights plus 0.2."""
    scores = np.array([sum(TOY_WORD_WEIGHTS.get(w, 0.0) for w in text.split()) + 0.2 for text in texts])
    logits = np.stack([-scores, np.zeros_like(scores), scores], axis=1)
    exp = np.exp(logits - logits.max(1, keepdims=True))
    return exp / exp.sum(1, keepdims=True)


def _reference_leave_one_out(predict_proba, words, target):
    from xai_lesson.perturbation import leave_one_out
    return leave_one_out(predict_proba, words, target)


def _fresh_text(seed):
    """The toy model, a text of 4 + seed words drawn from its vocabulary and others, and a target class."""
    rng = np.random.default_rng(seed)
    vocabulary = [*TOY_WORD_WEIGHTS, "film", "plot", "very"]
    return toy_predict_proba, [str(w) for w in rng.choice(vocabulary, 4 + seed)], seed % 3


SCORES = Returns("a NumPy array (or a torch tensor)", ARRAY.accepts, "return a NumPy array, np.array(...) of the scores")


@exercise("5.1", "leave_one_out", _reference_leave_one_out,
          "Each word's score is how much p(target) drops when that one word is deleted.",
          returns=SCORES, fresh=_fresh_text)
def check_leave_one_out(learner):
    words = ["good", "film", "not", "bad", "good", "!"]        # 'good' twice: delete by position
    for target in (2, 0):
        scores = learner(toy_predict_proba, list(words), target)
        want = _reference_leave_one_out(toy_predict_proba, words, target)
        shape = tuple(scores.shape)
        if shape != want.shape:
            raise Wrong(f"it returns shape {shape} for {len(words)} words, not one score per word",
                        "compare the full text with each of the len(words) texts missing one word")
        if close(scores, want):
            continue
        if close(scores, -want):
            raise Wrong("the signs are flipped", "return p(all words) minus p(all words but word i)")
        without = toy_predict_proba([" ".join(words[:i] + words[i + 1:]) for i in range(len(words))])
        if close(scores, without[:, target]):
            raise Wrong("it returns p(target) without each word, not the drop",
                        "subtract each from p(target | all words)")
        if any(close(scores, _reference_leave_one_out(toy_predict_proba, words, other)) for other in (0, 1, 2)):
            raise Wrong(f"for target {target} it scores the other class", "take column `target` of the probabilities")
        by_value = toy_predict_proba([" ".join(words)] + [" ".join(w for w in words if w != word) for word in words])
        if close(scores, by_value[0, target] - by_value[1:, target]):
            raise Wrong("deleting a word that occurs twice deletes both copies",
                        "delete by position, words[:i] + words[i + 1:], not by value")
        raise Wrong("the scores are not p(target | all words) - p(target | all but word i)",
                    "build the len(words) + 1 texts, call predict_proba once, and subtract")


def _reference_lime_kernel(masks, kernel_width=0.25):
    from xai_lesson.perturbation import lime_kernel
    return lime_kernel(masks, kernel_width)


def _fresh_masks(seed):
    from xai_lesson.perturbation import lime_masks
    return lime_masks(5 + seed, 8 + 3 * seed, seed=seed), 0.2 * seed


@exercise("5.2", "lime_kernel", _reference_lime_kernel,
          "One weight per sample: the exponential kernel on the cosine distance to the full text, as LIME's.",
          returns=SCORES, fresh=_fresh_masks)
def check_lime_kernel(learner):
    from xai_lesson.perturbation import lime_masks

    masks = lime_masks(7, 12, seed=0)                          # 12 samples of 7 words: rows and columns differ
    for width in (0.25, 0.5):
        weights = learner(masks.copy(), width)
        want = _reference_lime_kernel(masks, width)
        shape = tuple(weights.shape)
        if shape != want.shape:
            raise Wrong(f"for 12 samples of 7 words it returns shape {shape}, not one weight per sample (12,)",
                        "count the words each mask keeps along axis 1, masks.sum(1)")
        if close(weights, want):
            continue
        kept, n = masks.sum(1), masks.shape[1]
        cosine = 1 - kept / np.sqrt(kept * n)
        if close(weights, want ** 2):
            raise Wrong("the weights are the squares of LIME's", "take the square root: np.sqrt(np.exp(-d**2 / width**2))")
        if close(weights, np.sqrt(np.exp(-cosine ** 2 / width))):
            raise Wrong("the kernel divides by the width, not by its square", "divide d**2 by kernel_width**2")
        if any(close(weights, np.sqrt(np.exp(-d ** 2 / width ** 2))) for d in (1 - kept / n, np.sqrt(n - kept))):
            raise Wrong("the distance is not LIME's cosine distance to the full text",
                        "d = 1 - s / sqrt(s * n) for a mask that keeps s of n words")
        raise Wrong("the weights are not sqrt(exp(-d**2 / width**2)) of the cosine distance d",
                    "d = 1 - masks.sum(1) / np.sqrt(masks.sum(1) * n)")
