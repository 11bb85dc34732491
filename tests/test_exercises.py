"""The code-along checks: each passes its reference and catches typical wrong answers with the right hint.

For every check: the reference passes; a stub that raises NotImplementedError is
"not done yet"; a function that crashes is summarised in one line; and at least
three typical wrong implementations each fail with the hint that fixes them.
Every check returns the learner's function only when it passed.
"""

import numpy as np
import pytest
import torch

from xai_lesson import exercises
from xai_lesson.exercises import EXERCISES

CHECKS = {name: getattr(exercises, name) for name in EXERCISES}


def verdict(check, function, capsys):
    """(the printed line, the function the check returned)."""
    use = check(function)
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1, f"a check prints one line, got: {printed!r}"
    return printed.strip(), use


@pytest.mark.parametrize("name", CHECKS)
def test_the_reference_passes(name, capsys):
    check = CHECKS[name]
    line, use = verdict(check, check.reference, capsys)
    assert line == check.exercise.correct(), line
    assert use is check.reference


@pytest.mark.parametrize("name", CHECKS)
def test_a_stub_is_not_done_yet_and_the_reference_carries_on(name, capsys):
    check = CHECKS[name]

    def stub(*args, **kwargs):
        raise NotImplementedError(f"Exercise {check.exercise.number}: write {check.exercise.function}; see the episode")

    line, use = verdict(check, stub, capsys)
    assert line == check.exercise.not_done()
    assert "not done yet" in line and "carries on with the reference" in line
    assert use is check.reference


@pytest.mark.parametrize("name", CHECKS)
def test_a_crash_is_one_line_with_the_error_and_no_traceback(name, capsys):
    check = CHECKS[name]

    def crashes(*args, **kwargs):
        return torch.ones(2, 3) @ torch.ones(2, 3)

    line, use = verdict(check, crashes, capsys)
    assert "not right yet: your function raised RuntimeError: mat1 and mat2 shapes cannot be multiplied" in line
    assert "Traceback" not in line and use is check.reference


@pytest.mark.parametrize("name", CHECKS)
def test_something_that_is_not_a_function_is_refused_politely(name, capsys):
    line, use = verdict(CHECKS[name], None, capsys)
    assert "is a NoneType, not a function" in line and use is CHECKS[name].reference


def test_every_exercise_has_its_number_function_and_stub():
    numbers = [e.number for e in EXERCISES.values()]
    assert len(numbers) == len(set(numbers))
    for name, registered in EXERCISES.items():
        assert name == "check_" + registered.function
        assert registered.stub() == (f'raise NotImplementedError("Exercise {registered.number}: write '
                                     f'{registered.function}; see the episode")')
        assert exercises.by_function(registered.function) is registered
    with pytest.raises(KeyError, match="register its check"):
        exercises.by_function("no_such_exercise")


def assert_wrong(check, function, hint, capsys):
    line, use = verdict(check, function, capsys)
    assert "not right yet" in line and hint in line, line
    assert use is check.reference


# ---------------------------------------------------------------- episode 04

def hooked(model, layer, x, class_index, *, remove=True, batch=False, all_scores=False, keep=None):
    """activations_and_gradients, with one mistake switched on."""
    stored = {} if keep is None else keep

    def hook(module, inputs, output):
        stored["A"] = output
        output.register_hook(lambda grad: stored.__setitem__("dA", stored.get("dA", 0) + grad))

    handle = layer.register_forward_hook(hook)
    scores = model(x)
    (scores.sum() if all_scores else scores[0, class_index]).backward()
    if remove:
        handle.remove()
    A, dA = stored["A"].detach(), stored["dA"].detach()
    return (A, dA) if batch else (A[0], dA[0])


def right_hooks(*args):
    return hooked(*args)


shared = {}


@pytest.mark.parametrize("mistake, hint", [
    (lambda *a: hooked(*a, remove=False), "call handle.remove()"),
    (lambda *a: hooked(*a, batch=True), "take the first (only) image with [0]"),
    (lambda *a: hooked(*a, all_scores=True), "call .backward() on the one score scores[0, class_index]"),
    (lambda *a: hooked(*a, keep=shared), "make a fresh dictionary for the stored tensors inside the function"),
    (lambda *a: tuple(t.requires_grad_() for t in hooked(*a)), "call .detach()"),
    (lambda *a: hooked(*a)[0], "end with `return A, dA`"),
])
def test_activations_and_gradients_catches(mistake, hint, capsys):
    shared.clear()
    assert_wrong(exercises.check_activations_and_gradients, mistake, hint, capsys)


def test_activations_and_gradients_accepts_a_right_answer_written_differently(capsys):
    line, use = verdict(exercises.check_activations_and_gradients, right_hooks, capsys)
    assert "correct" in line and use is right_hooks


@pytest.mark.parametrize("mistake, hint", [
    (lambda A, dA: dA.mean(dim=0), "average over the grid, dims (1, 2), and keep dim 0"),
    (lambda A, dA: dA.mean(dim=(0, 1)), "average over the grid, dims (1, 2), and keep dim 0"),
    (lambda A, dA: dA.sum(dim=(1, 2)), "with .mean(dim=(1, 2))"),
    (lambda A, dA: A.mean(dim=(1, 2)), "average the gradients dA, not A"),
    (lambda A, dA: dA.abs().mean(dim=(1, 2)), "no abs() or relu() before pooling"),
])
def test_gradcam_weights_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_gradcam_weights, mistake, hint, capsys)


@pytest.mark.parametrize("mistake, hint", [
    (lambda A, w: (w[:, None, None] * A).sum(dim=0), "keep the positive part"),
    (lambda A, w: torch.relu(w[:, None, None] * A).sum(dim=0), "sum the weighted maps first, then apply the ReLU"),
    (lambda A, w: torch.relu((w[:, None, None] * A).mean(dim=0)), "sum the weighted maps with .sum(dim=0)"),
    (lambda A, w: torch.relu((w[:, None, None] * A).sum(dim=1)), "sum over dim 0, the channels"),
])
def test_gradcam_map_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_gradcam_map, mistake, hint, capsys)


def test_a_check_leaves_the_notebooks_random_numbers_alone(capsys):
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    for check in CHECKS.values():
        check(check.reference)
    assert torch.equal(torch.rand(3), expected)


# ---------------------------------------------------------------- episode 08

def make_hook(*, rows="all", positions="token", keep_tuple=True, give_back=True):
    """restore_hook, with one mistake switched on."""
    def restore_hook(clean, token):
        def hook(module, inputs, output):
            hidden = (output[0] if isinstance(output, tuple) else output).clone()
            where = token if positions == "token" else slice(None)
            if rows == "all":
                hidden[:, where] = clean[where]
            else:
                hidden[0, where] = clean[where]
            if not give_back:
                return None
            if not keep_tuple:
                return hidden
            return (hidden,) + tuple(output[1:]) if isinstance(output, tuple) else hidden
        return hook
    return restore_hook


def test_restore_hook_accepts_a_right_answer_written_differently(capsys):
    line, use = verdict(exercises.check_restore_hook, make_hook(), capsys)
    assert "correct" in line


@pytest.mark.parametrize("mistake, hint", [
    (make_hook(rows="first"), "copy into every sample, hidden[:, token], not hidden[0, token]"),
    (make_hook(positions="all"), "assign to hidden[:, token] = clean[token]"),
    (make_hook(keep_tuple=False), "return `(hidden,) + tuple(output[1:])` when the output is a tuple"),
    (make_hook(give_back=False), "a hook's return value replaces the output"),
    (lambda clean, token: None, "`return hook`"),
])
def test_restore_hook_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_restore_hook, mistake, hint, capsys)


def make_restored_logits(*, remove=True, shift=0, clean_shift=0, every_position=False, probabilities=False):
    """restored_logits, with one mistake switched on."""
    def restored_logits(model, layers, clean_outputs, layer, token, embeds):
        from xai_lesson.tracing import restore_hook
        handle = layers[min(layer + shift, len(layers) - 1)].register_forward_hook(
            restore_hook(clean_outputs[min(layer + clean_shift, len(layers) - 1)], token))
        try:
            with torch.inference_mode():
                logits = model(inputs_embeds=embeds).logits
        finally:
            if remove:
                handle.remove()
        logits = logits if every_position else logits[:, -1]
        return logits.softmax(-1) if probabilities else logits
    return restored_logits


@pytest.mark.parametrize("mistake, hint", [
    (make_restored_logits(remove=False), "handle.remove() in a `finally:` block"),
    (make_restored_logits(shift=1), "hook layers[layer] and copy in clean_outputs[layer]"),
    (make_restored_logits(shift=1, clean_shift=1), "hook layers[layer] and copy in clean_outputs[layer]"),
    (make_restored_logits(clean_shift=-1), "hook layers[layer] and copy in clean_outputs[layer]"),
    (make_restored_logits(every_position=True), "logits[:, -1]"),
    (make_restored_logits(probabilities=True), "return the logits; restore() applies the softmax"),
])
def test_restored_logits_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_restored_logits, mistake, hint, capsys)


def test_the_toy_language_model_makes_the_checks_meaningful():
    """Restoring a subject position changes the answer, and restoring every position of the last layer gives it back."""
    model, layers, clean_outputs, clean, noisy = exercises.toy_language_model()
    from xai_lesson.tracing import restored_logits
    with torch.inference_mode():
        clean_logits = model(inputs_embeds=clean).logits[:, -1]
        noisy_logits = model(inputs_embeds=noisy).logits[:, -1]
    assert (noisy_logits - clean_logits).abs().max() > 0.1, "the noise must change the answer"
    restored = restored_logits(model, layers, clean_outputs, len(layers) - 1, slice(1, None), noisy)
    assert torch.allclose(restored, clean_logits.expand_as(restored), atol=1e-6)
    one_token = restored_logits(model, layers, clean_outputs, 0, 2, noisy)
    assert (one_token - noisy_logits).abs().max() > 0.01 and (one_token - clean_logits).abs().max() > 0.01


# ---------------------------------------------------------------- episode 07

def pooled_sum(hidden, attention_mask):
    return (hidden * attention_mask.unsqueeze(-1)).sum(1)


@pytest.mark.parametrize("mistake, hint", [
    (lambda hidden, mask: hidden.mean(dim=1), "multiply by the mask"),
    (pooled_sum, "divide by the number of real tokens, mask.sum(1)"),
    (lambda hidden, mask: pooled_sum(hidden, mask) / hidden.shape[1], "divide by mask.sum(1)"),
    (lambda hidden, mask: pooled_sum(hidden, mask) / mask.sum(), "divide each text by its own count"),
    (lambda hidden, mask: (hidden * mask.unsqueeze(-1)).mean(2), "average over dim 1, the tokens"),
])
def test_masked_mean_pool_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_masked_mean_pool, mistake, hint, capsys)


def make_control_labels(*, per_token=False, lowercase=True, distinct_tags=False, ignore_seed=False):
    """control_labels, with one mistake switched on."""
    def control_labels(words, labels, seed=0):
        rng = np.random.default_rng(None if ignore_seed else seed)
        labels = np.asarray(labels)
        pool = np.unique(labels) if distinct_tags else labels
        if per_token:
            return rng.choice(pool, size=len(words))
        keys = [w.lower() if lowercase else w for w in words]
        types = sorted(set(keys))
        lookup = dict(zip(types, rng.choice(pool, size=len(types))))
        return np.array([lookup[k] for k in keys])
    return control_labels


@pytest.mark.parametrize("mistake, hint", [
    (make_control_labels(per_token=True), "draw one label per word type"),
    (make_control_labels(lowercase=False), "lower-case each word"),
    (make_control_labels(distinct_tags=True), "not from the list of distinct tags"),
    (make_control_labels(ignore_seed=True), "rng = np.random.default_rng(seed)"),
    (lambda words, labels, seed=0: labels, "draw one label per word type"),   # the real labels
])
def test_control_labels_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_control_labels, mistake, hint, capsys)


def test_control_labels_accepts_a_right_answer_written_differently(capsys):
    line, use = verdict(exercises.check_control_labels, make_control_labels(), capsys)
    assert "correct" in line


# ---------------------------------------------------------------- episode 05

def texts_without(words, drop):
    return [" ".join(words)] + [" ".join(drop(words, i)) for i in range(len(words))]


def make_leave_one_out(*, flip=False, by_value=False, column=None, no_difference=False):
    """leave_one_out, with one mistake switched on."""
    def leave_one_out(predict_proba, words, target):
        drop = (lambda w, i: [x for x in w if x != w[i]]) if by_value else (lambda w, i: w[:i] + w[i + 1:])
        p = np.asarray(predict_proba(texts_without(words, drop)))[:, target if column is None else column]
        if no_difference:
            return p[1:]
        return p[1:] - p[0] if flip else p[0] - p[1:]
    return leave_one_out


@pytest.mark.parametrize("mistake, hint", [
    (make_leave_one_out(flip=True), "return p(all words) minus p(all words but word i)"),
    (make_leave_one_out(by_value=True), "delete by position"),
    (make_leave_one_out(column=2), "take column `target`"),
    (make_leave_one_out(no_difference=True), "subtract each from p(target | all words)"),
    (lambda predict_proba, words, target: np.zeros(len(words) + 1), "one score per word"),
])
def test_leave_one_out_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_leave_one_out, mistake, hint, capsys)


def kernel(masks, width, *, distance="cosine", root=True, square_width=True):
    masks = np.asarray(masks, dtype=float)
    kept, n = masks.sum(1), masks.shape[1]
    d = {"cosine": 1 - kept / np.sqrt(kept * n), "fraction": 1 - kept / n, "euclidean": np.sqrt(n - kept)}[distance]
    w = np.exp(-d ** 2 / (width ** 2 if square_width else width))
    return np.sqrt(w) if root else w


@pytest.mark.parametrize("mistake, hint", [
    (lambda m, w: kernel(m, w, root=False), "take the square root"),
    (lambda m, w: kernel(m, w, square_width=False), "divide d**2 by kernel_width**2"),
    (lambda m, w: kernel(m, w, distance="fraction"), "d = 1 - s / sqrt(s * n)"),
    (lambda m, w: kernel(m, w, distance="euclidean"), "d = 1 - s / sqrt(s * n)"),
    (lambda m, w: np.sqrt(np.exp(-(1 - m.sum(0) / np.sqrt(m.sum(0) * m.shape[0])) ** 2 / w ** 2)), "masks.sum(1)"),
])
def test_lime_kernel_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_lime_kernel, mistake, hint, capsys)


def test_lime_kernel_accepts_a_right_answer_written_differently(capsys):
    line, use = verdict(exercises.check_lime_kernel, kernel, capsys)
    assert "correct" in line


# --- Episode 06 ---

def estimate_new(g, e, c):
    return g @ c.T


def estimate_old(g, e, c):
    return (g * e).sum(-1, keepdim=True)


@pytest.mark.parametrize("mistake, hint", [
    (lambda g, e, c: estimate_old(g, e, c) - estimate_new(g, e, c), "the change is new minus old"),
    (estimate_new, "subtract each token's own term e_i . g_i"),
    (lambda g, e, c: estimate_new(g, e, c) - (g * e).sum(-1), "keep the token axis when you sum"),
    (lambda g, e, c: estimate_new(g, e, c) - (g * e).sum(0, keepdim=True), "sum over the embedding axis"),
    (lambda g, e, c: c @ g.T - (g * e).sum(-1), "put tokens in rows"),
    (lambda g, e, c: (g @ c.T - estimate_old(g, e, c)).mean(0), "shape (tokens, candidates)"),
])
def test_swap_estimate_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_swap_estimate, mistake, hint, capsys)


def test_swap_estimate_accepts_a_right_answer_written_differently(capsys):
    def by_broadcasting(g, e, c):
        return ((c[None, :, :] - e[:, None, :]) * g[:, None, :]).sum(-1)

    line, use = verdict(exercises.check_swap_estimate, by_broadcasting, capsys)
    assert "correct" in line and use is by_broadcasting


def test_swap_estimate_reference_is_the_real_change_for_a_linear_score():
    """For a linear score the first-order estimate is exact: check it against a swap done for real."""
    generator = torch.Generator().manual_seed(0)
    w = torch.randn(5, 3, generator=generator)                     # score = sum over tokens of w_i . e_i
    e, candidates = torch.randn(5, 3, generator=generator), torch.randn(7, 3, generator=generator)
    estimate = exercises.check_swap_estimate.reference(w, e, candidates)
    for i, v in [(0, 0), (2, 5), (4, 6)]:
        swapped = e.clone()
        swapped[i] = candidates[v]
        assert torch.isclose(estimate[i, v], (w * swapped).sum() - (w * e).sum(), atol=1e-5)


def flip_rate_mistake(kind):
    """flip_rate, with one mistake switched on."""
    def flip_rate(labels, original, attacked):
        labels, original, attacked = np.asarray(labels), np.asarray(original), np.asarray(attacked)
        right, changed = original == labels, attacked != original
        return {"count": lambda: changed[right].sum(),
                "already wrong": lambda: changed.mean(),
                "all texts": lambda: changed[right].sum() / len(labels),
                "true label": lambda: (attacked != labels).mean(),
                "accuracy drop": lambda: right.mean() - (attacked == labels).mean(),
                "unchanged": lambda: (~changed[right]).mean()}[kind]()
    return flip_rate


@pytest.mark.parametrize("kind, hint", [
    ("count", "divide by the number of texts predicted correctly before the attack"),
    ("already wrong", "keep only the texts predicted correctly before the attack, original == labels"),
    ("all texts", "divide by the number of texts with original == labels"),
    ("true label", "compare the attacked prediction with the original prediction"),
    ("accuracy drop", "count flips among the texts predicted correctly before the attack"),
    ("unchanged", "count the predictions that changed, attacked != original"),
])
def test_flip_rate_catches(kind, hint, capsys):
    assert_wrong(exercises.check_flip_rate, flip_rate_mistake(kind), hint, capsys)


def test_flip_rate_catches_an_answer_right_only_on_the_first_case(capsys):
    assert_wrong(exercises.check_flip_rate, lambda labels, original, attacked: 4 / 7, "count the texts whose "
                 "prediction changed", capsys)
    assert_wrong(exercises.check_flip_rate, lambda labels, original, attacked: [0.5, 0.5], "one number", capsys)


def test_flip_rate_reference_agrees_with_the_packages_flip_rate():
    """On texts all predicted correctly, the share of flips is perturbation.flip_rate's."""
    from xai_lesson.perturbation import flip_rate

    texts = ["good film", "great fun", "good but not great", "a film", "bad good great", "good !"]
    before = exercises.toy_predict_proba(texts).argmax(1)
    positive = [t for t, p in zip(texts, before) if p == 2]
    after = exercises.toy_predict_proba([f"bad {t}" for t in positive]).argmax(1)
    ours = exercises.check_flip_rate.reference(np.full(len(positive), 2), np.full(len(positive), 2), after)
    assert 0 < ours < 1, "the toy case must flip some texts and not others"
    assert ours == flip_rate(exercises.toy_predict_proba, positive, 2, prefix="bad")
    with pytest.raises(ValueError, match="nothing to flip"):
        exercises.check_flip_rate.reference([0, 1], [1, 0], [1, 0])
