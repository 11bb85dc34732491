"""Checks for episode 06's code-along exercises: attacking text models."""

import numbers

import numpy as np
import torch

from .harness import ARRAY, Returns, Wrong, close, exercise


def _reference_swap_estimate(gradient, embeddings, candidate_embeddings):
    from xai_lesson.perturbation import first_order_flip_scores
    return first_order_flip_scores(gradient, embeddings, candidate_embeddings)


def _fresh_swap(seed):
    """Gradients and embeddings of 2 + seed tokens and 4 + 2 * seed candidate words, in 3 + seed dimensions."""
    generator = torch.Generator().manual_seed(seed)
    tokens, candidates, d = 2 + seed, 4 + 2 * seed, 3 + seed
    return (torch.randn(tokens, d, generator=generator), torch.randn(tokens, d, generator=generator),
            torch.randn(candidates, d, generator=generator))


@exercise("6.1", "swap_estimate", _reference_swap_estimate,
          "Row i, column v is (e_v - e_i) . g_i: the first-order change of log p when token i becomes word v.",
          returns=ARRAY, fresh=_fresh_swap)
def check_swap_estimate(learner):
    generator = torch.Generator().manual_seed(6)
    # A square case first (4 tokens, 4 candidates), where a transposed result or a term
    # broadcast along the wrong axis still has the right shape; then 5 tokens, 7 candidates.
    for n_tokens, n_candidates in ((4, 4), (5, 7)):
        g = torch.randn(n_tokens, 3, generator=generator)                 # the gradient at each token
        e = torch.randn(n_tokens, 3, generator=generator)                 # each token's embedding
        candidates = torch.randn(n_candidates, 3, generator=generator)    # the candidate words' embeddings
        try:
            got = learner(g.clone(), e.clone(), candidates.clone())
        except RuntimeError as error:
            if "must match the size" not in str(error):
                raise
            raise Wrong("its two terms do not broadcast to (tokens, candidates): a sum runs over the wrong axis",
                        "sum over the embedding axis with keepdim=True, (gradient * embeddings).sum(-1, "
                        "keepdim=True), which has shape (tokens, 1)") from None
        want = _reference_swap_estimate(g, e, candidates)
        shape = tuple(got.shape)
        if shape == (n_candidates, n_tokens) and n_tokens != n_candidates:
            raise Wrong(f"for {n_tokens} tokens and {n_candidates} candidates it has shape {shape}, "
                        f"(candidates, tokens)", "put tokens in rows: gradient @ candidate_embeddings.T")
        if shape != (n_tokens, n_candidates):
            raise Wrong(f"for {n_tokens} tokens and {n_candidates} candidates it has shape {shape}, not "
                        f"(tokens, candidates) = {(n_tokens, n_candidates)}",
                        "one dot product per token and candidate: gradient @ candidate_embeddings.T, of "
                        "shape (tokens, candidates)")
        if close(got, want):
            continue
        new_term, old_term = g @ candidates.T, (g * e).sum(-1, keepdim=True)
        if close(got, -want):
            raise Wrong("the signs are flipped: it estimates swapping word v back to token i",
                        "the change is new minus old, (e_v - e_i) . g_i")
        if close(got, new_term):
            raise Wrong("it leaves out the token being replaced: it scores e_v . g_i alone",
                        "subtract each token's own term e_i . g_i, (gradient * embeddings).sum(-1, keepdim=True)")
        if close(got, new_term - old_term.T):
            raise Wrong("column v subtracts token v's term e_v . g_v, not row i's e_i . g_i",
                        "keep the token axis when you sum: .sum(-1, keepdim=True) gives shape (tokens, 1)")
        if close(got, want.T):
            raise Wrong("rows and columns are swapped: it has candidates in rows",
                        "put tokens in rows: gradient @ candidate_embeddings.T")
        raise Wrong("the estimates are not (e_v - e_i) . g_i",
                    "gradient @ candidate_embeddings.T - (gradient * embeddings).sum(-1, keepdim=True)")


def _reference_flipped_share(labels, original, attacked):
    labels, original, attacked = (np.asarray(a) for a in (labels, original, attacked))
    right = original == labels
    if not right.any():
        raise ValueError("no text was predicted correctly before the attack, so there is nothing to flip.")
    return float((attacked[right] != original[right]).mean())


def _fresh_predictions(seed):
    """Labels and predictions of 9 + 3 * seed texts in three classes, the first one predicted correctly."""
    rng = np.random.default_rng(seed)
    labels, original, attacked = rng.integers(0, 3, (3, 9 + 3 * seed))
    original[0] = labels[0]
    return labels, original, attacked


SHARE = Returns("one number", lambda v: isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_)),
                "return one share, a float between 0 and 1")


@exercise("6.2", "flipped_share", _reference_flipped_share,
          "The share of the correctly predicted texts whose prediction the attack changed.",
          returns=SHARE, fresh=_fresh_predictions)
def check_flipped_share(learner):
    # Three classes, ten texts: 7 predicted correctly, of which the attack flips 4; of the 3
    # already wrong, one is "fixed" by the attack (text 6) and two stay wrong.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    original = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])
    attacked = np.array([1, 0, 2, 1, 0, 1, 1, 2, 0, 0])
    want = _reference_flipped_share(labels, original, attacked)                # 4 / 7
    value = float(learner(labels.copy(), original.copy(), attacked.copy()))
    if abs(value - want) < 1e-6:
        # A second case, in which every text was right before the attack and half flip.
        labels2 = np.array([1, 0, 1, 0])
        again = float(learner(labels2, labels2.copy(), np.array([0, 0, 1, 1])))
        if abs(again - 0.5) > 1e-6:
            raise Wrong(f"with 4 texts all right before and 2 flipped it returns {again:.3f}, not 0.5",
                        "count the texts whose prediction changed, among those predicted correctly before")
        return
    mistakes = [
        (4, "it returns the number of flips, 4, not a share",
         "divide by the number of texts predicted correctly before the attack"),
        (5 / 10, "it counts a change of prediction on texts the model already got wrong",
         "keep only the texts predicted correctly before the attack, original == labels"),
        (4 / 10, "it divides the flips by the number of all texts, not of the correctly predicted ones",
         "divide by the number of texts with original == labels"),
        (6 / 10, "it counts every wrong prediction after the attack, including texts that were wrong before",
         "compare the attacked prediction with the original prediction, among the texts predicted correctly"),
        (7 / 10 - 4 / 10, "it returns the drop in accuracy, in which a wrong prediction the attack fixes cancels a flip",
         "count flips among the texts predicted correctly before the attack"),
        (3 / 7, "it returns the share of predictions the attack left unchanged",
         "count the predictions that changed, attacked != original"),
    ]
    for wrong_value, what, hint in mistakes:
        if abs(value - wrong_value) < 1e-6:
            raise Wrong(what, hint)
    raise Wrong(f"it returns {value:.3f} where 4 of 7 correctly predicted texts flip (0.571)",
                "((attacked != original) & (original == labels)).sum() / (original == labels).sum()")
