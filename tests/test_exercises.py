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


# --- Episode 01 ---

import warnings  # noqa: E402  (imports kept with episode 01's tests, for a clean merge)

import torch.nn.functional as F  # noqa: E402

MEAN = torch.tensor(exercises.TINY_MEAN).view(1, 3, 1, 1)
STD = torch.tensor(exercises.TINY_STD).view(1, 3, 1, 1)


def make_fgsm(*, descend=False, sign=True, clamp=True, normalised=False, leftover=False, score=False,
              own_model=None, attached=False):
    """fgsm, with one mistake switched on."""
    def fgsm(model, pixels, label, epsilon):
        net = own_model or model
        if normalised:                 # the step is taken on normalised inputs, then undone
            x = ((pixels - MEAN) / STD).clone().requires_grad_(True)
            logits = net(x * STD + MEAN)
        elif leftover:                 # differentiates the caller's tensor with .backward()
            x = pixels.requires_grad_(True)
            logits = net(x)
        else:
            x = pixels.clone().requires_grad_(True)
            logits = net(x)
        target = logits[0, label] if score else F.cross_entropy(logits, torch.tensor([label]))
        if leftover:
            target.backward()
            gradient = x.grad
        else:
            gradient, = torch.autograd.grad(target, x)
        step = epsilon * (gradient.sign() if sign else gradient)
        result = x - step if descend else x + step
        if normalised:
            result = result * STD + MEAN
        if clamp:
            result = result.clamp(0, 1)
        return result if attached else result.detach()
    return fgsm


@pytest.mark.parametrize("mistake, hint", [
    (make_fgsm(descend=True), "FGSM climbs the loss of the true class"),
    (make_fgsm(sign=False), "take gradient.sign(), so that every pixel moves by exactly epsilon"),
    (make_fgsm(clamp=False), "clip the result to valid pixel values with .clamp(0, 1)"),
    (make_fgsm(normalised=True), "take the step on the pixel values in [0, 1], which `model` normalises itself"),
    (make_fgsm(leftover=True), "differentiate a copy, pixels = pixels.clone().requires_grad_(True)"),
    (make_fgsm(score=True), "differentiate the loss, F.cross_entropy(model(pixels), torch.tensor([label]))"),
    (make_fgsm(own_model=exercises.tiny_pixel_classifier(seed=3)[0]), "compute the loss from model(pixels)"),
    (make_fgsm(attached=True), "end with .detach()"),
    (lambda *args: make_fgsm()(*args).numpy(), "return a tensor"),
])
def test_fgsm_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_fgsm, mistake, hint, capsys)


def test_fgsm_says_how_far_a_normalised_step_moves_each_channel(capsys):
    line, _ = verdict(exercises.check_fgsm, make_fgsm(normalised=True), capsys)
    assert "move by 0.229, 0.224, 0.225 x epsilon, not by epsilon" in line, line


def test_fgsm_accepts_a_right_answer_written_differently(capsys):
    def fgsm(model, pixels, label, epsilon):
        pixels = pixels.detach().clone()
        pixels.requires_grad = True
        loss = -torch.log_softmax(model(pixels), dim=-1)[0, label]
        loss.backward()
        return torch.clamp(pixels.detach() + epsilon * torch.sign(pixels.grad), min=0.0, max=1.0)

    line, use = verdict(exercises.check_fgsm, fgsm, capsys)
    assert "correct" in line and use is fgsm


def test_the_fgsm_reference_matches_captum():
    from captum.robust import FGSM, PGD

    model, pixels = exercises.tiny_pixel_classifier()
    for label in range(3):
        ours = exercises.check_fgsm.reference(model, pixels, label, 0.05)
        attack = FGSM(model, loss_func=torch.nn.CrossEntropyLoss(reduction="none"), lower_bound=0.0, upper_bound=1.0)
        attack.zero_thresh = 0.0
        theirs = attack.perturb(pixels.clone().requires_grad_(True), epsilon=0.05, target=torch.tensor([label]))
        assert torch.equal(ours, theirs.detach())
    model, pixels = exercises.tiny_pixel_classifier(seed=1)
    ours = exercises.check_iterated_fgsm.reference(model, pixels, 0, 0.05, 0.02, 5)
    pgd = PGD(model, loss_func=torch.nn.CrossEntropyLoss(reduction="none"), lower_bound=0.0, upper_bound=1.0)
    pgd.fgsm.zero_thresh = 0.0
    with warnings.catch_warnings():  # PGD copies the image for each step and warns that the copy needs gradients
        warnings.simplefilter("ignore", UserWarning)
        theirs = pgd.perturb(pixels, radius=0.05, step_size=0.02, step_num=5, target=torch.tensor([0]))
    assert torch.allclose(ours, theirs.detach(), atol=1e-6)
    assert (ours - pixels).abs().max() <= 0.05 + 1e-6 < 5 * 0.02, "the check's steps must overshoot the budget"


def make_iterated_fgsm(*, project=True, at_end=False, restart=False, around_zero=False, around_itself=False,
                       step_is_epsilon=False, extra_steps=0):
    """iterated_fgsm, with one mistake switched on."""
    fgsm = exercises.check_fgsm.reference

    def iterated_fgsm(model, pixels, label, epsilon, step, n_steps):
        adversarial = pixels.clone()
        for _ in range(n_steps + extra_steps):
            previous = adversarial
            adversarial = fgsm(model, pixels if restart else adversarial, label, epsilon if step_is_epsilon else step)
            if project and not at_end:
                if around_zero:
                    adversarial = torch.clamp(adversarial, -epsilon, epsilon)
                elif around_itself:
                    adversarial = torch.clamp(adversarial, previous - epsilon, previous + epsilon)
                else:
                    adversarial = torch.clamp(adversarial, pixels - epsilon, pixels + epsilon)
        if at_end:
            adversarial = torch.clamp(adversarial, pixels - epsilon, pixels + epsilon)
        return adversarial
    return iterated_fgsm


PROJECT_BACK = "torch.clamp(adversarial, pixels - epsilon, pixels + epsilon)"


@pytest.mark.parametrize("mistake, hint", [
    (make_iterated_fgsm(project=False), "after each step, clip back to within epsilon of the original: " + PROJECT_BACK),
    (make_iterated_fgsm(around_itself=True), "after each step, clip back to within epsilon of the original"),
    (make_iterated_fgsm(around_zero=True), "clip to the original's values plus or minus epsilon: " + PROJECT_BACK),
    (make_iterated_fgsm(at_end=True), "clip inside the loop, after every step"),
    (make_iterated_fgsm(restart=True), "give each step the previous step's output"),
    (make_iterated_fgsm(step_is_epsilon=True), "call fgsm with the step size"),
    (make_iterated_fgsm(extra_steps=-1), "loop `for _ in range(n_steps):`"),
    (lambda model, pixels, label, epsilon, step, n_steps: make_iterated_fgsm()(
        exercises.tiny_pixel_classifier(seed=3)[0], pixels, label, epsilon, step, n_steps), "pass it on to every step"),
])
def test_iterated_fgsm_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_iterated_fgsm, mistake, hint, capsys)


def test_iterated_fgsm_accepts_a_right_answer_written_differently(capsys):
    def iterated_fgsm(model, pixels, label, epsilon, step, n_steps):
        adversarial = pixels.clone()
        for _ in range(n_steps):
            adversarial = exercises.check_fgsm.reference(model, adversarial, label, step)
            perturbation = (adversarial - pixels).clamp(-epsilon, epsilon)
            adversarial = pixels + perturbation
        return adversarial

    line, use = verdict(exercises.check_iterated_fgsm, iterated_fgsm, capsys)
    assert "correct" in line and use is iterated_fgsm


# --- Episode 09 ---

def make_normalised_recovery(*, probabilities=False, normalise=True, by_clean=False, flipped=False, row_index=False):
    """normalised_recovery, with one mistake switched on."""
    def normalised_recovery(patched_logits, clean_logits, corrupted_logits, pair):
        def difference(logits):
            if probabilities:
                logits = logits.softmax(-1)
            if row_index:
                return logits[pair.clean_answer_id] - logits[pair.corrupted_answer_id]
            return logits[..., pair.clean_answer_id] - logits[..., pair.corrupted_answer_id]
        patched, clean, corrupted = (difference(x) for x in (patched_logits, clean_logits, corrupted_logits))
        if not normalise:
            return patched - corrupted
        if by_clean:
            return (patched - corrupted) / clean
        recovery = (patched - corrupted) / (clean - corrupted)
        return 1 - recovery if flipped else recovery
    return normalised_recovery


@pytest.mark.parametrize("mistake, hint", [
    (make_normalised_recovery(probabilities=True), "without a softmax"),
    (make_normalised_recovery(normalise=False), "divide by (clean - corrupted)"),
    (make_normalised_recovery(by_clean=True), "divide by the whole gap, (clean - corrupted)"),
    (make_normalised_recovery(flipped=True), "(patched - corrupted) / (clean - corrupted)"),
    (make_normalised_recovery(row_index=True), "logits[..., pair.clean_answer_id]"),
])
def test_normalised_recovery_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_normalised_recovery, mistake, hint, capsys)


def test_normalised_recovery_does_not_mind_answers_swapped_in_every_run(capsys):
    # Swapping the two answers flips the sign of all three logit differences, which cancels.
    def swapped(patched_logits, clean_logits, corrupted_logits, pair):
        d = [x[..., pair.corrupted_answer_id] - x[..., pair.clean_answer_id]
             for x in (patched_logits, clean_logits, corrupted_logits)]
        return (d[0] - d[2]) / (d[1] - d[2])

    line, use = verdict(exercises.check_normalised_recovery, swapped, capsys)
    assert "correct" in line and use is swapped


def make_patched_logits(*, remove=True, every=False, hidden_states_index=None, return_output=True,
                        tuple_output=True, all_positions=False):
    """patched_logits, written with two hooks as in the episode, with one mistake switched on."""
    def patched_logits(model, layers, layer, position, clean_ids, corrupted_ids):
        saved = {}
        if hidden_states_index is None:
            handle = layers[layer].register_forward_hook(lambda m, a, output: saved.__setitem__("clean", output[0]))
            with torch.no_grad():
                model(input_ids=clean_ids)
            handle.remove()
        else:
            with torch.no_grad():
                states = model(input_ids=clean_ids, output_hidden_states=True).hidden_states
            saved["clean"] = states[hidden_states_index(layer)]

        def patch(module, args, output):
            hidden = output[0].clone()
            where = slice(None) if every else position
            hidden[:, where] = saved["clean"][:, where]
            if not return_output:
                return None
            return (hidden,) + tuple(output[1:]) if tuple_output else hidden

        handle = layers[layer].register_forward_hook(patch)
        with torch.no_grad():
            logits = model(input_ids=corrupted_ids).logits
        if remove:
            handle.remove()
        return logits if all_positions else logits[0, -1]
    return patched_logits


@pytest.mark.parametrize("mistake, hint", [
    (make_patched_logits(remove=False), "call handle.remove()"),
    (make_patched_logits(every=True), "copy one position, hidden[:, position]"),
    (make_patched_logits(hidden_states_index=lambda layer: layer), "hidden_states[L + 1]"),
    (make_patched_logits(hidden_states_index=lambda layer: layer + 2), "hidden_states[L + 1]"),
    (make_patched_logits(return_output=False), "return (hidden,) + tuple(output[1:])"),
    (make_patched_logits(tuple_output=False), "return `(hidden,) + tuple(output[1:])` when the output is a tuple"),
    (make_patched_logits(all_positions=True), "logits[0, -1]"),
])
def test_patched_logits_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_patched_logits, mistake, hint, capsys)


def test_patched_logits_accepts_a_right_answer_written_differently(capsys):
    # With output_hidden_states: layer L's output is hidden_states[L + 1].
    right = make_patched_logits(hidden_states_index=lambda layer: layer + 1)
    line, use = verdict(exercises.check_patched_logits, right, capsys)
    assert "correct" in line and use is right


# --- Episode 02 ---

def make_vanilla_gradient(*, in_place=False, score="target", reduce=None):
    """vanilla_gradient, with one mistake switched on."""
    def vanilla_gradient(model, x, target):
        if not in_place:
            x = x.clone()
        x.requires_grad_(True)
        logits = model(x)
        chosen = {"target": lambda: logits[0, target], "sum": lambda: logits.sum(),
                  "top": lambda: logits.max(), "probability": lambda: torch.softmax(logits, 1)[0, target],
                  "next": lambda: logits[0, target + 1]}[score]()
        chosen.backward()
        grad = x.grad.detach().clone()
        if reduce == "abs":
            return grad.abs()
        if reduce == "abs-sum":
            return grad.abs().sum(1)
        if reduce == "max":
            return grad.abs().amax(1, keepdim=True)
        return grad

    return vanilla_gradient


@pytest.mark.parametrize("mistake, hint", [
    (make_vanilla_gradient(in_place=True), "work on a fresh copy, x = x.clone().requires_grad_(True)"),
    (make_vanilla_gradient(score="sum"), "backpropagate the one score model(x)[0, target]"),
    (make_vanilla_gradient(score="top"), "take the logit of the class you were given: model(x)[0, target]"),
    (make_vanilla_gradient(score="next"), "take the logit of the class you were given: model(x)[0, target]"),
    (make_vanilla_gradient(score="probability"), "explain the logit, model(x)[0, target], before any softmax"),
    (make_vanilla_gradient(reduce="abs-sum"), "return the gradient itself, one number per pixel and colour channel"),
    (make_vanilla_gradient(reduce="max"), "return the gradient itself, one number per pixel and colour channel"),
    (make_vanilla_gradient(reduce="abs"), "return the signed gradient"),
])
def test_vanilla_gradient_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_vanilla_gradient, mistake, hint, capsys)


def test_vanilla_gradient_accepts_a_right_answer_written_differently(capsys):
    def with_autograd_grad(model, x, target):
        x = x.detach().requires_grad_(True)
        return torch.autograd.grad(model(x)[0, target], x)[0]

    line, use = verdict(exercises.check_vanilla_gradient, with_autograd_grad, capsys)
    assert "correct" in line and use is with_autograd_grad


def make_ig(*, alphas="midpoint", times="difference", pool="mean", first_batch_only=False):
    """integrated_gradients_by_hand as in the episode, with one mistake switched on."""
    def integrated_gradients_by_hand(model, x, target, baseline, steps, batch_size=4):
        points_on_path = {"midpoint": (torch.arange(steps) + 0.5) / steps,
                          "linspace": torch.linspace(0, 1, steps),
                          "left": torch.arange(steps) / steps,
                          "right": (torch.arange(steps) + 1) / steps}[alphas]
        path = baseline + points_on_path.view(-1, 1, 1, 1) * (x - baseline)
        grads = []
        for start in range(0, len(path), batch_size):
            points = path[start:start + batch_size].clone().requires_grad_(True)
            grads.append(torch.autograd.grad(model(points)[:, target].sum(), points)[0])
            if first_batch_only:
                break
        grads = torch.cat(grads)
        mean_grad = {"mean": lambda: grads.mean(0, keepdim=True), "sum": lambda: grads.sum(0, keepdim=True),
                     "all": lambda: grads.mean(), "channels": lambda: grads.mean(1, keepdim=True),
                     "none": lambda: grads}[pool]()
        return {"difference": lambda: (x - baseline) * mean_grad, "x": lambda: x * mean_grad,
                "nothing": lambda: mean_grad}[times]()

    return integrated_gradients_by_hand


@pytest.mark.parametrize("mistake, hint", [
    (make_ig(times="nothing"), "multiply it by (x - baseline)"),
    (make_ig(times="x"), "multiply by (x - baseline)"),
    (make_ig(alphas="linspace"), "alphas = (torch.arange(steps) + 0.5) / steps"),
    (make_ig(alphas="left"), "alphas = (torch.arange(steps) + 0.5) / steps"),
    (make_ig(alphas="right"), "alphas = (torch.arange(steps) + 0.5) / steps"),
    (make_ig(pool="sum"), "average them over the points with .mean(0)"),
    (make_ig(pool="all"), "average over dim 0 only, the points"),
    (make_ig(pool="channels"), "average the gradients over the points, dim 0"),
    (make_ig(pool="none"), "average the gradients over the points, dim 0"),
    (make_ig(first_batch_only=True), "loop over every batch"),
])
def test_integrated_gradients_by_hand_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_integrated_gradients_by_hand, mistake, hint, capsys)


def test_the_episodes_own_ig_passes(capsys):
    line, use = verdict(exercises.check_integrated_gradients_by_hand, make_ig(), capsys)
    assert "correct" in line and "0.1 %" in line


def test_the_tiny_model_separates_the_quadrature_rules():
    """The IG check is live: on its model, the wrong points on the path change IG by far more than its tolerance."""
    model, x, baseline = exercises.tiny_smooth_cnn()
    midpoint = make_ig()(model, x, 1, baseline, 6)
    for alphas in ("linspace", "left", "right"):
        other = make_ig(alphas=alphas)(model, x, 1, baseline, 6)
        assert (other - midpoint).abs().max() > 0.02 * midpoint.abs().max(), alphas


# --- Episode 03 ---

def share_inside(maps, masks, *, absolute=True, abs_after_sum=False, inverted=False, normalise="map",
                 zero_safe=True, means=False):
    """mass_inside, with one mistake switched on."""
    if abs_after_sum:
        heat = maps.sum(dim=1).abs()
    else:
        heat = maps.abs().sum(dim=1) if absolute else maps.sum(dim=1)
    region = ~masks if inverted else masks
    inside = (heat * region).flatten(1).sum(dim=1)
    total = {"map": heat.flatten(1).sum(dim=1), "batch": heat.sum().expand(len(heat)),
             "none": torch.ones(len(heat))}[normalise]
    if means:
        inside, total = inside / region.flatten(1).sum(dim=1), total / heat[0].numel()
    if zero_safe:
        return torch.where(total > 0, inside / total, 0.0).numpy()
    return (inside / total).numpy()


@pytest.mark.parametrize("mistake, hint", [
    (lambda m, k: share_inside(m, k, absolute=False), "take absolute values, maps.abs(), before you sum"),
    (lambda m, k: share_inside(m, k, abs_after_sum=True), "take the absolute value of each channel first"),
    (lambda m, k: share_inside(m, k, inverted=True), "multiply by masks, not by ~masks"),
    (lambda m, k: share_inside(m, k, normalise="none"), "divide by each map's total absolute attribution"),
    (lambda m, k: share_inside(m, k, normalise="batch"), "divide each map by its own total"),
    (lambda m, k: share_inside(m, k, means=True), "divide the sums, not the means"),
    (lambda m, k: share_inside(m, k, zero_safe=False), "return 0 where the total is 0"),
    (lambda m, k: torch.from_numpy(share_inside(m, k)), "end with .numpy()"),
    (lambda m, k: share_inside(m, k).sum(), "compute one score per map"),
    (lambda m, k: (m.abs() * k[:, None]).flatten(2).sum(2).numpy(), "sum the absolute values over the colour channels"),
])
def test_mass_inside_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_mass_inside, mistake, hint, capsys)


def test_mass_inside_accepts_a_right_answer_in_numpy(capsys):
    def in_numpy(maps, masks):
        heat = np.abs(maps.numpy()).sum(axis=1)
        total = heat.reshape(len(heat), -1).sum(axis=1)
        inside = (heat * masks.numpy()).reshape(len(heat), -1).sum(axis=1)
        return np.divide(inside, total, out=np.zeros_like(total), where=total > 0)

    line, use = verdict(exercises.check_mass_inside, in_numpy, capsys)
    assert "correct" in line and use is in_numpy


def peak_inside(maps, masks, *, heat=None, inverted=False, whole_batch=False, batch_axis=False, positions=False,
                first=False, any_tied=False):
    """pointing_game (the share of the tied peak pixels inside the mask), with one mistake switched on."""
    heat = maps.abs().sum(dim=1) if heat is None else heat(maps)
    flat, region = heat.flatten(1), (~masks if inverted else masks).flatten(1)
    if batch_axis:
        return flat.argmax(dim=0).numpy()
    if whole_batch:
        return region[:, flat.flatten().argmax() % flat.shape[1]].numpy()
    if positions:
        return flat.argmax(dim=1).numpy()
    if first:                                                        # the old, tie-unaware answer: argmax
        peak = flat.argmax(dim=1)
        return region[torch.arange(len(peak)), peak].numpy()
    peaks = flat == flat.amax(dim=1, keepdim=True)
    if any_tied:
        return (peaks & region).any(dim=1).numpy()
    return ((peaks & region).sum(dim=1) / peaks.sum(dim=1)).numpy()


@pytest.mark.parametrize("mistake, hint", [
    (lambda m, k: peak_inside(m, k, heat=lambda m: m.sum(dim=1)), "take absolute values, maps.abs(), before you look"),
    (lambda m, k: peak_inside(m, k, heat=lambda m: m.sum(dim=1).abs()), "take the absolute value of each channel first"),
    (lambda m, k: peak_inside(m, k, heat=lambda m: m.abs().amax(dim=1)), "sum the absolute values over the channels"),
    (lambda m, k: peak_inside(m, k, heat=lambda m: m.sum(dim=1), first=True), "take absolute values, maps.abs()"),
    (lambda m, k: peak_inside(m, k, inverted=True), "count the peak pixels where the mask is True"),
    (lambda m, k: peak_inside(m, k, whole_batch=True), "find one peak per map"),
    (lambda m, k: peak_inside(m, k, batch_axis=True), "flatten each map with .flatten(1) and reduce over dim 1"),
    (lambda m, k: peak_inside(m, k, positions=True), "look the peak pixels up in their mask"),
    (lambda m, k: peak_inside(m, k, first=True), "mark every pixel equal to the map's largest value"),
    (lambda m, k: peak_inside(m, k, any_tied=True), "divide the number of tied peak pixels inside"),
    (lambda m, k: torch.from_numpy(peak_inside(m, k)), "end with .numpy()"),
])
def test_pointing_game_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_pointing_game, mistake, hint, capsys)


def test_pointing_game_rejects_the_old_tie_unaware_answer(capsys):
    """The lesson's first solution took argmax, the first tied pixel: the check must now reject it."""
    def old_solution(maps, masks):
        magnitude = maps.abs().sum(dim=1).flatten(1)
        peak = magnitude.argmax(dim=1)
        return masks.flatten(1)[torch.arange(len(peak)), peak].numpy()

    assert_wrong(exercises.check_pointing_game, old_solution, "mark every pixel equal to the map's largest value", capsys)


def test_pointing_game_accepts_the_solution_and_a_right_answer_in_numpy(capsys):
    def solution(maps, masks):
        magnitude = maps.abs().sum(dim=1).flatten(1)
        peaks = magnitude == magnitude.amax(dim=1, keepdim=True)
        return ((peaks & masks.flatten(1)).sum(dim=1) / peaks.sum(dim=1)).numpy()

    def in_numpy(maps, masks):
        heat = np.abs(maps.numpy()).sum(axis=1).reshape(len(maps), -1)
        peaks = heat == heat.max(axis=1, keepdims=True)
        return (peaks & masks.numpy().reshape(len(maps), -1)).sum(axis=1) / peaks.sum(axis=1)

    for function in (solution, in_numpy):
        line, use = verdict(exercises.check_pointing_game, function, capsys)
        assert "correct" in line and use is function


def test_the_tied_example_tells_every_pointing_mistake_apart():
    maps, masks = exercises.ep03.tied_peaks_example()
    answers = [tuple(np.round(peak_inside(maps, masks, **switch).astype(float), 6)) for switch in
               ({}, {"inverted": True}, {"whole_batch": True}, {"first": True}, {"any_tied": True})]
    answers += [tuple(np.round(peak_inside(maps, masks, heat=heat, first=first).astype(float), 6)) for first in (False, True)
                for heat in (lambda m: m.sum(dim=1), lambda m: m.sum(dim=1).abs(), lambda m: m.abs().amax(dim=1))]
    assert len(set(answers)) == len(answers), answers


def test_pointing_game_refuses_one_answer_for_the_whole_batch(capsys):
    assert_wrong(exercises.check_pointing_game, lambda m, k: np.bool_(True), "compute one score per map", capsys)


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


def flipped_share_mistake(kind):
    """flipped_share, with one mistake switched on."""
    def flipped_share(labels, original, attacked):
        labels, original, attacked = np.asarray(labels), np.asarray(original), np.asarray(attacked)
        right, changed = original == labels, attacked != original
        return {"count": lambda: changed[right].sum(),
                "already wrong": lambda: changed.mean(),
                "all texts": lambda: changed[right].sum() / len(labels),
                "true label": lambda: (attacked != labels).mean(),
                "accuracy drop": lambda: right.mean() - (attacked == labels).mean(),
                "unchanged": lambda: (~changed[right]).mean()}[kind]()
    return flipped_share


@pytest.mark.parametrize("kind, hint", [
    ("count", "divide by the number of texts predicted correctly before the attack"),
    ("already wrong", "keep only the texts predicted correctly before the attack, original == labels"),
    ("all texts", "divide by the number of texts with original == labels"),
    ("true label", "compare the attacked prediction with the original prediction"),
    ("accuracy drop", "count flips among the texts predicted correctly before the attack"),
    ("unchanged", "count the predictions that changed, attacked != original"),
])
def test_flipped_share_catches(kind, hint, capsys):
    assert_wrong(exercises.check_flipped_share, flipped_share_mistake(kind), hint, capsys)


def test_flipped_share_catches_an_answer_right_only_on_the_first_case(capsys):
    assert_wrong(exercises.check_flipped_share, lambda labels, original, attacked: 4 / 7, "count the texts whose "
                 "prediction changed", capsys)
    assert_wrong(exercises.check_flipped_share, lambda labels, original, attacked: [0.5, 0.5], "one number", capsys)


def test_flipped_share_reference_agrees_with_the_packages_flip_rate():
    """On texts all predicted correctly, the share of flips is perturbation.flip_rate's."""
    from xai_lesson.perturbation import flip_rate

    texts = ["good film", "great fun", "good but not great", "a film", "bad good great", "good !"]
    before = exercises.toy_predict_proba(texts).argmax(1)
    positive = [t for t, p in zip(texts, before) if p == 2]
    after = exercises.toy_predict_proba([f"bad {t}" for t in positive]).argmax(1)
    ours = exercises.check_flipped_share.reference(np.full(len(positive), 2), np.full(len(positive), 2), after)
    assert 0 < ours < 1, "the toy case must flip some texts and not others"
    assert ours == flip_rate(exercises.toy_predict_proba, positive, 2, prefix="bad")
    with pytest.raises(ValueError, match="nothing to flip"):
        exercises.check_flipped_share.reference([0, 1], [1, 0], [1, 0])


# ---------------------------------------------------------------- episode 10

def make_removal_influence(*, sign=1.0, regularise=True, bias_too=False, hessian=True, per_n=False, inverse=False):
    """removal_influence, with one mistake switched on."""
    def removal_influence(A, y, theta, C, a_test, y_test):
        p = 1 / (1 + np.exp(-A @ theta))
        G = A * (p - y)[:, None]
        g_test = a_test * (1 / (1 + np.exp(-a_test @ theta)) - y_test)
        penalty = np.full(len(theta), 1 / C if regularise else 0.0)
        if not bias_too:
            penalty[-1] = 0.0
        H = (A * (p * (1 - p))[:, None]).T @ A + np.diag(penalty)
        if not hessian:
            return sign * G @ g_test
        solved = np.linalg.inv(H) @ g_test if inverse else np.linalg.solve(H, g_test)
        return sign * G @ solved / (len(y) if per_n else 1)
    return removal_influence


@pytest.mark.parametrize("mistake, hint", [
    (make_removal_influence(sign=-1.0), "do not negate the result"),
    (make_removal_influence(regularise=False), "add diag(1/C) for the weights"),
    (make_removal_influence(regularise=False, inverse=True), "add diag(1/C) for the weights"),
    (make_removal_influence(bias_too=True), "the bias (the last parameter) is not penalised"),
    (make_removal_influence(hessian=False), "solve H x = g_test"),
    (make_removal_influence(per_n=True), "no division by n"),
    (lambda A, y, theta, C, a_test, y_test: np.zeros(len(y) + 1), "one number per training example"),
])
def test_removal_influence_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_removal_influence, mistake, hint, capsys)


def test_removal_influence_accepts_a_right_answer_written_with_an_inverse(capsys):
    line, _ = verdict(exercises.check_removal_influence, make_removal_influence(inverse=True), capsys)
    assert "correct" in line


def tracin_variant(**options):
    from xai_lesson.exercises.ep10 import _variant
    return lambda *problem: _variant(*problem, **options)


@pytest.mark.parametrize("mistake, hint", [
    (tracin_variant(no_rate=True), "multiply each checkpoint's dot product by its learning rate"),
    (tracin_variant(last_layer=True), "every parameter"),
    (tracin_variant(pair="train-train"), "one of the test example's"),
    (tracin_variant(pair="test-test"), "one of the test example's"),
    (tracin_variant(last_checkpoint=True), "sum over all the checkpoints"),
    (lambda *problem: -tracin_variant()(*problem), "the sign is flipped"),
    (lambda *problem: [tracin_variant()(*problem)], "return one score"),
])
def test_tracin_score_catches(mistake, hint, capsys):
    assert_wrong(exercises.check_tracin_score, mistake, hint, capsys)


def test_tracin_score_accepts_a_tensor_and_a_flattened_answer(capsys):
    def flattened(checkpoints, rates, loss_fn, train_example, test_example):
        total = torch.zeros((), dtype=torch.float64)
        for model, rate in zip(checkpoints, rates):
            grads = []
            for inputs, targets in (train_example, test_example):
                g = torch.autograd.grad(loss_fn(model(inputs), targets), list(model.parameters()))
                grads.append(torch.cat([x.flatten() for x in g]))
            total = total + rate * grads[0] @ grads[1]
        return total
    line, _ = verdict(exercises.check_tracin_score, flattened, capsys)
    assert "correct" in line
