"""Checks for the code-along exercises: instant feedback for learners who work alone.

In an episode's notebook, each exercise is a function the learner writes. The
cell after it calls its check, for example::

    gradcam_weights = exercises.check_gradcam_weights(gradcam_weights)

A check runs the learner's function on small cases (seconds on a CPU), compares
it with the tested reference in this package and with properties the method must
satisfy, and prints ONE line:

- ``Exercise 4.2 gradcam_weights: correct. ...`` when it passes;
- ``Exercise 4.2 gradcam_weights: not right yet: <what is wrong>. Hint: <how to fix it>. ...``
  when it fails, including when the learner's code raises (the exception's type and
  message, never a traceback from inside torch);
- ``Exercise 4.2 gradcam_weights: not done yet. ...`` while the function still raises
  ``NotImplementedError`` (the stub in the learners' notebook).

It returns the function the rest of the notebook should use: the learner's if it
passed, the reference otherwise, so a learner who skips an exercise can carry on.

To add an exercise, write its check here with the ``@exercise`` decorator (see
CONTRIBUTING.md, "Code-along exercises"): the decorator registers it, so that
``scripts/make_code_along.py`` can write the stub and the expected "not done yet"
line into the learners' notebook.
"""

import functools
from dataclasses import dataclass

import numpy as np
import torch

CARRY_ON = "The notebook carries on with the reference version."


@dataclass(frozen=True)
class Exercise:
    """One code-along exercise: its number, the function the learner writes, and its check."""

    number: str          # "4.2": episode 04, second exercise
    function: str        # the name of the function the learner writes, e.g. "gradcam_weights"
    check: str           # the name of its check in this module, e.g. "check_gradcam_weights"
    success: str         # what the verdict adds when the function is right

    @property
    def label(self):
        return f"Exercise {self.number} {self.function}"

    def stub(self):
        """The line that replaces the solution's body in the learners' notebook."""
        return f'raise NotImplementedError("Exercise {self.number}: write {self.function}; see the episode")'

    def not_done(self):
        return f"{self.label}: not done yet. Write it above and run this cell again. {CARRY_ON}"

    def correct(self):
        return f"{self.label}: correct. {self.success}"

    def wrong(self, problem):
        return f"{self.label}: not right yet: {problem} {CARRY_ON}"


EXERCISES = {}          # check name -> Exercise, in the order they were registered


def by_function(name):
    """The registered exercise whose learner function is called ``name``."""
    for registered in EXERCISES.values():
        if registered.function == name:
            return registered
    raise KeyError(f"no exercise writes a function called {name!r}: register its check in "
                   "xai_lesson/exercises.py with @exercise(number, function, success).")


class Wrong(Exception):
    """Raised by a check's test when the learner's function is wrong: what is wrong, and a hint."""

    def __init__(self, what, hint):
        super().__init__(f"{what}. Hint: {hint}.")
        self.what, self.hint = what, hint


def exercise(number, function, reference, success):
    """Register a check for exercise ``number``, in which the learner writes ``function``.

    The decorated ``test(learner)`` raises ``Wrong(what, hint)`` or returns nothing;
    ``reference`` is the tested version the notebook uses when the learner's is not
    right; ``success`` is what the verdict says when it is. The registered check takes
    the learner's function and returns the one to use."""

    def register(test):
        name = "check_" + function
        registered = Exercise(number, function, name, success)
        if name in EXERCISES or any(e.number == number for e in EXERCISES.values()):
            raise ValueError(f"exercise {number} ({function}) is registered twice")
        EXERCISES[name] = registered

        @functools.wraps(test)
        def check(learner):
            verdict, use = judge(registered, test, learner, reference)
            print(verdict)
            return use

        check.__name__ = name
        check.__doc__ = (f"Check the learner's `{function}` (exercise {number}); print one line and return "
                         f"the function to use: the learner's if it is right, else the reference.")
        check.exercise = registered
        check.reference = reference
        return check

    return register


def judge(registered, test, learner, reference):
    """(verdict line, function to use) for one learner's function. Never raises."""
    if not callable(learner):
        return registered.wrong(f"`{registered.function}` is a {type(learner).__name__}, not a function. "
                                f"Hint: define it with `def {registered.function}(...)` and run that cell."), reference
    try:
        with torch.random.fork_rng():       # a check must not change the notebook's random numbers
            test(learner)
    except Wrong as problem:
        return registered.wrong(str(problem)), reference
    except NotImplementedError:
        return registered.not_done(), reference
    except Exception as error:              # the learner's code failed: summarise it, no traceback
        message = (str(error).strip().splitlines() or [""])[0][:200]
        return registered.wrong(f"your function raised {type(error).__name__}: {message}. Hint: run it on "
                                "the small example in the episode and read the error's last line."), reference
    return registered.correct(), learner


def _close(a, b, tol=1e-4):
    a, b = _tensor(a), _tensor(b)
    return a.shape == b.shape and bool(torch.allclose(a, b, rtol=tol, atol=tol))


def _tensor(value):
    if torch.is_tensor(value):
        return value.detach().to(torch.float64)
    return torch.as_tensor(np.asarray(value, dtype=np.float64))


def _shape(value, name):
    if not (torch.is_tensor(value) or isinstance(value, np.ndarray)):
        raise Wrong(f"{name} is a {type(value).__name__}, not a tensor",
                    "return a torch tensor (or a NumPy array)")
    return tuple(value.shape)


# ---------------------------------------------------------------------------
# Episode 04: GradCAM
# ---------------------------------------------------------------------------

def tiny_cnn(seed=0):
    """A small convolutional classifier (3 classes) and its target layer, for the GradCAM checks."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
            torch.nn.Conv2d(4, 6, 3, padding=1), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(6, 3))
        x = torch.randn(1, 3, 5, 6)
    return model.eval(), model[2], x


def _reference_activations_and_gradients(model, layer, x, class_index):
    from xai_lesson.cam import activations_and_gradients
    return activations_and_gradients(model, layer, x, class_index)


def _reference_gradcam_weights(A, dA):
    from xai_lesson.cam import channel_weights
    return channel_weights(dA)


def _reference_gradcam_map(A, weights):
    return torch.relu((torch.as_tensor(weights)[:, None, None] * torch.as_tensor(A)).sum(dim=0))


@exercise("4.1", "activations_and_gradients", _reference_activations_and_gradients,
          "It returns the layer's feature maps and their gradients, (channels, h, w) each, and leaves no hook behind.")
def check_activations_and_gradients(learner):
    from xai_lesson.cam import count_hooks

    model, layer, x = tiny_cnn()
    for class_index in (0, 2, 2):              # twice the same class: a second call must give the same answer
        before = count_hooks(model)
        result = learner(model, layer, x, class_index)
        if count_hooks(model) > before:
            raise Wrong("a hook is still registered on the model after your function returned",
                        "keep the handle that register_forward_hook returns and call handle.remove() "
                        "(in a `finally:` block, so it runs even after an error)")
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise Wrong("it should return two things, (A, dA)", "end with `return A, dA`")
        A, dA = result
        want_A, want_dA = _reference_activations_and_gradients(model, layer, x, class_index)
        for name, got, want in [("A", A, want_A), ("dA", dA, want_dA)]:
            shape = _shape(got, name)
            if shape == (1, *want.shape):
                raise Wrong(f"{name} has shape {shape}, with the batch dimension",
                            "take the first (only) image with [0], to get (channels, h, w)")
            if shape != tuple(want.shape):
                raise Wrong(f"{name} has shape {shape}, not (channels, h, w) = {tuple(want.shape)}",
                            "store the output of the hooked layer itself, and its gradient")
            if torch.is_tensor(got) and got.requires_grad:
                raise Wrong(f"{name} is still attached to the graph (requires_grad=True)",
                            "call .detach() on what the hooks stored")
        if not _close(A, want_A):
            raise Wrong("A is not the hooked layer's output", "store `output` in the forward hook on `layer`")
        if not _close(dA, want_dA):
            everything = sum(_reference_activations_and_gradients(model, layer, x, c)[1] for c in range(3))
            if _close(dA, everything):
                raise Wrong("dA is the gradient of the sum of all class scores",
                            "call .backward() on the one score scores[0, class_index]")
            if _close(dA, 2 * want_dA) or _close(dA, want_dA + _reference_activations_and_gradients(
                    model, layer, x, 0)[1]):
                raise Wrong("dA adds up gradients from an earlier call",
                            "make a fresh dictionary for the stored tensors inside the function, and "
                            "keep the gradient the hook receives instead of adding to it")
            raise Wrong("dA is not the gradient of the class score with respect to A",
                        "register `output.register_hook(...)` inside the forward hook and backpropagate "
                        "scores[0, class_index]")


@exercise("4.2", "gradcam_weights", _reference_gradcam_weights,
          "One weight per channel: each channel's gradient averaged over the grid.")
def check_gradcam_weights(learner):
    generator = torch.Generator().manual_seed(0)
    A = torch.rand(5, 3, 4, generator=generator)                # 5 channels on a 3 x 4 grid
    dA = torch.randn(5, 3, 4, generator=generator)
    weights = learner(A.clone(), dA.clone())
    want = _reference_gradcam_weights(A, dA)
    shape = _shape(weights, "the result")
    if shape != (5,):
        if shape in [(3, 4), (5, 3), (5, 4), (3,), (4,)]:
            raise Wrong(f"for 5 channels on a 3 x 4 grid it has shape {shape}, not (5,): it pools over the wrong axes",
                        "average over the grid, dims (1, 2), and keep dim 0, the channels")
        raise Wrong(f"for 5 channels on a 3 x 4 grid it has shape {shape}, not one weight per channel (5,)",
                    "average dA over dims (1, 2)")
    if _close(weights, want):
        return
    if _close(weights, want * 12):
        raise Wrong("the weights are 12 times too large on a 3 x 4 grid: a sum, not a mean",
                    "average the gradient over the grid with .mean(dim=(1, 2))")
    if _close(weights, A.mean(dim=(1, 2))):
        raise Wrong("the weights are the averaged activations A", "average the gradients dA, not A")
    if _close(weights, dA.abs().mean(dim=(1, 2))) or _close(weights, torch.relu(dA).mean(dim=(1, 2))):
        raise Wrong("the negative gradients are lost", "average dA itself: no abs() or relu() before pooling")
    raise Wrong("the weights are not the channel means of dA", "return dA.mean(dim=(1, 2))")


@exercise("4.3", "gradcam_map", _reference_gradcam_map,
          "The weighted sum of the feature maps, with its negative part set to zero.")
def check_gradcam_map(learner):
    generator = torch.Generator().manual_seed(1)
    A = torch.rand(5, 3, 4, generator=generator)
    weights = torch.tensor([0.5, -1.0, 0.25, -0.1, 0.2])        # mixed signs: the ReLU matters
    cam = learner(A.clone(), weights.clone())
    want = _reference_gradcam_map(A, weights)
    shape = _shape(cam, "the map")
    if shape != (3, 4):
        raise Wrong(f"for 5 channels on a 3 x 4 grid it has shape {shape}, not (3, 4)",
                    "multiply A by weights[:, None, None] and sum over dim 0, the channels")
    if _close(cam, want):
        if not bool((want == 0).any()):
            raise AssertionError("the check's example has no negative region; it cannot test the ReLU")
        return
    raw = (weights[:, None, None] * A).sum(dim=0)
    if _close(cam, raw):
        raise Wrong("the map has negative values", "keep the positive part: torch.relu(...) of the weighted sum")
    if _close(cam, torch.relu(weights[:, None, None] * A).sum(dim=0)):
        raise Wrong("the ReLU is applied to each channel before the sum", "sum the weighted maps first, then apply the ReLU")
    if _close(cam, want / 5) or _close(cam, torch.relu(raw / 5)):
        raise Wrong("the map is 5 times too small with 5 channels: a mean over channels, not a sum",
                    "sum the weighted maps with .sum(dim=0)")
    raise Wrong("the map is not relu(sum over channels of weight * A)",
                "return torch.relu((weights[:, None, None] * A).sum(dim=0))")


# ---------------------------------------------------------------------------
# Episode 08: causal tracing
# ---------------------------------------------------------------------------

class _ToyLayer(torch.nn.Module):
    """A decoder layer in miniature: mixes earlier positions in, and outputs a tuple like transformers' layers."""

    def __init__(self, size):
        super().__init__()
        self.linear = torch.nn.Linear(size, size)

    def forward(self, hidden):
        positions = torch.arange(1, hidden.shape[1] + 1, dtype=hidden.dtype)[None, :, None]
        causal_mean = hidden.cumsum(dim=1) / positions        # each position sees itself and earlier ones
        return hidden + torch.tanh(self.linear(causal_mean)), causal_mean


class _ToyLanguageModel(torch.nn.Module):
    """A small causal 'language model' with the interface the tracing code uses: model(inputs_embeds=...).logits."""

    def __init__(self, size=8, n_layers=4, vocabulary=11):
        super().__init__()
        self.layers = torch.nn.ModuleList(_ToyLayer(size) for _ in range(n_layers))
        self.head = torch.nn.Linear(size, vocabulary)

    def forward(self, inputs_embeds):
        hidden = inputs_embeds
        for layer in self.layers:
            hidden = layer(hidden)[0]
        from types import SimpleNamespace
        return SimpleNamespace(logits=self.head(hidden))


def toy_language_model(seed=0, tokens=5, samples=3):
    """(model, its decoder layers, clean outputs per layer (tokens, size), clean embeddings, noisy embeddings)."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _ToyLanguageModel().eval()
        clean = torch.randn(1, tokens, 8)
        noisy = clean.repeat(samples, 1, 1)
        noisy[:, 1:3] += 3 * torch.randn(samples, 2, 8)      # the 'subject' is positions 1 and 2
    clean_outputs = [None] * len(model.layers)

    def keep(index):
        def hook(module, inputs, output):
            clean_outputs[index] = output[0][0].clone()
        return hook

    handles = [layer.register_forward_hook(keep(i)) for i, layer in enumerate(model.layers)]
    with torch.inference_mode():
        model(inputs_embeds=clean)
    for handle in handles:
        handle.remove()
    return model, model.layers, clean_outputs, clean, noisy


def _reference_restore_hook(clean, token):
    from xai_lesson.tracing import restore_hook
    return restore_hook(clean, token)


@exercise("8.1", "restore_hook", _reference_restore_hook,
          "The hook copies the clean state into that position of every noisy sample, and passes the rest on.")
def check_restore_hook(learner):
    model, layers, clean_outputs, clean, noisy = toy_language_model()
    layer = layers[1]
    with torch.inference_mode():
        inputs = layers[0](noisy)[0]
        for token in (2, 4, slice(1, None)):
            output = layer(inputs)
            original = output[0].clone()
            want = _reference_restore_hook(clean_outputs[1], token)(layer, (inputs,), output)
            hook = learner(clean_outputs[1], token)
            if not callable(hook):
                raise Wrong(f"restore_hook returned a {type(hook).__name__}, not a hook",
                            "define `def hook(module, inputs, output):` inside it and `return hook`")
            got = hook(layer, (inputs,), (output[0].clone(), output[1]))
            if got is None:
                raise Wrong("the hook returns nothing, so the layer's output is unchanged",
                            "end the hook with `return` the new output; a hook's return value replaces the output")
            if not isinstance(got, tuple):
                raise Wrong("the layer outputs a tuple (hidden, ...) but the hook returns only a tensor",
                            "return `(hidden,) + tuple(output[1:])` when the output is a tuple")
            if len(got) != len(output) or got[1] is not output[1]:
                raise Wrong("the hook changes or drops the rest of the layer's output tuple",
                            "replace only output[0]: `(hidden,) + tuple(output[1:])`")
            hidden = _tensor(got[0])
            if hidden.shape != original.shape:
                raise Wrong(f"the hidden state has shape {tuple(hidden.shape)}, not {tuple(original.shape)}",
                            "clone output[0] and assign into hidden[:, token]")
            if _close(hidden, want[0]):
                continue
            if _close(hidden[0], want[0][0]) and not _close(hidden[1:], want[0][1:]):
                raise Wrong("only the first noisy sample is restored",
                            "copy into every sample, hidden[:, token], not hidden[0, token]")
            if _close(hidden, clean_outputs[1].expand_as(hidden)):
                raise Wrong("every position is restored, not only `token`",
                            "assign to hidden[:, token] = clean[token]")
            raise Wrong(f"at token {token} the hidden state is not the noisy one with clean[token] copied in",
                        "hidden[:, token] = clean[token], and leave the other positions as they are")


def _reference_restored_logits(model, layers, clean_outputs, layer, token, embeds):
    from xai_lesson.tracing import restored_logits
    return restored_logits(model, layers, clean_outputs, layer, token, embeds)


@exercise("8.2", "restored_logits", _reference_restored_logits,
          "It matches the reference at every layer, gives back the clean run when every position is "
          "restored, and removes its hook.")
def check_restored_logits(learner):
    from xai_lesson.cam import count_hooks

    model, layers, clean_outputs, clean, noisy = toy_language_model()
    with torch.inference_mode():
        clean_logits = model(inputs_embeds=clean).logits[:, -1]
    last = len(layers) - 1
    for layer in range(len(layers)):
        for token in (2, 4, slice(1, None)):
            got = learner(model, layers, clean_outputs, layer, token, noisy.clone())
            if count_hooks(model):
                raise Wrong("a hook is still registered on the model after your function returned",
                            "remove it with handle.remove() in a `finally:` block")
            want = _reference_restored_logits(model, layers, clean_outputs, layer, token, noisy)
            shape = _shape(got, "the result")
            if shape == (noisy.shape[0], noisy.shape[1], want.shape[-1]):
                raise Wrong(f"it returns the logits at every position, shape {shape}",
                            "keep the next-token logits, the last position: logits[:, -1]")
            if shape != tuple(want.shape):
                raise Wrong(f"it returns shape {shape}, not (samples, vocabulary) = {tuple(want.shape)}",
                            "return model(inputs_embeds=embeds).logits[:, -1]")
            if _close(got, want):
                continue
            if _close(got, want.softmax(-1)) or _close(got, want.log_softmax(-1)):
                raise Wrong("it returns probabilities, not logits", "return the logits; restore() applies the softmax")
            # Another layer hooked, or another layer's clean output copied in:
            neighbours = [_reference_restored_logits(model, layers, {hooked: clean_outputs[copied]}, hooked, token, noisy)
                          for hooked in range(len(layers)) for copied in range(len(layers))
                          if (hooked, copied) != (layer, layer)]
            if any(_close(got, n) for n in neighbours) or (layer == last and token == slice(1, None)
                                                           and not _close(got, clean_logits)):
                raise Wrong(f"restoring layer {layer} restores another layer (restoring every position of the last "
                            "layer must give back the clean logits)",
                            "hook layers[layer] and copy in clean_outputs[layer], the same index for both")
            raise Wrong(f"at layer {layer}, token {token} the logits differ from the reference",
                        "register restore_hook(clean_outputs[layer], token) on layers[layer], then run "
                        "model(inputs_embeds=embeds)")


# ---------------------------------------------------------------------------
# Episode 07: probing
# ---------------------------------------------------------------------------

def _reference_masked_mean_pool(hidden, attention_mask):
    from xai_lesson.text_classifier import mean_pool
    return mean_pool(hidden, attention_mask)


@exercise("7.1", "masked_mean_pool", _reference_masked_mean_pool,
          "One vector per text, the mean over its real tokens: padding gets zero weight.")
def check_masked_mean_pool(learner):
    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(3, 5, 4, generator=generator)         # 3 texts, 5 token positions, 4 features
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]])
    pooled = learner(hidden.clone(), mask.clone())
    want = _reference_masked_mean_pool(hidden, mask)
    shape = _shape(pooled, "the result")
    if shape != (3, 4):
        raise Wrong(f"for 3 texts of 5 tokens with 4 features it has shape {shape}, not (3, 4)",
                    "average over dim 1, the tokens")
    if _close(pooled, want):
        alone = learner(hidden[1:2, :2].clone(), mask[1:2, :2].clone())
        if not _close(alone, want[1:2]):
            raise Wrong("a text gets a different vector alone than padded in a batch",
                        "give padding zero weight in both the sum and the count")
        return
    if _close(pooled, hidden.mean(dim=1)):
        raise Wrong("the mean includes the padding tokens",
                    "multiply by the mask, mask = attention_mask.unsqueeze(-1).float(), and divide by mask.sum(1)")
    masked_sum = (hidden * mask.unsqueeze(-1)).sum(dim=1)
    if _close(pooled, masked_sum):
        raise Wrong("it returns the sum over real tokens, not their mean", "divide by the number of real tokens, mask.sum(1)")
    if _close(pooled, masked_sum / hidden.shape[1]):
        raise Wrong("it divides by the padded length, not by the number of real tokens", "divide by mask.sum(1)")
    if _close(pooled, masked_sum / mask.sum()):
        raise Wrong("it divides by the number of real tokens in the whole batch",
                    "divide each text by its own count, mask.sum(1) (keep dim 1 with unsqueeze)")
    raise Wrong("the vectors are not the means over the real tokens",
                "(hidden * mask).sum(1) / mask.sum(1) with mask = attention_mask.unsqueeze(-1).float()")


def _reference_control_labels(words, labels, seed=0):
    from xai_lesson.probing import control_labels
    return control_labels(words, labels, seed=seed)


@exercise("7.2", "control_labels", _reference_control_labels,
          "Each word type gets one random label, drawn from the real labels' distribution, the same for one seed.")
def check_control_labels(learner):
    rng = np.random.default_rng(0)
    vocabulary = [f"w{i}" for i in range(400)]
    words = [vocabulary[i] for i in rng.integers(0, len(vocabulary), 3000)]
    words = [w.upper() if i % 3 == 0 else w for i, w in enumerate(words)]     # the same word, capitalised
    labels = np.where(rng.random(len(words)) < 0.8, "NOUN", "VERB")           # a skewed distribution
    control = np.asarray(learner(list(words), labels.copy(), seed=0))
    if control.shape != labels.shape:
        raise Wrong(f"it returns {control.shape[0] if control.ndim else 0} labels for {len(words)} words",
                    "return one control label per word, in order")
    if not set(control.tolist()) <= set(labels.tolist()):
        raise Wrong(f"it returns labels that are not tags, such as {sorted(set(control.tolist()) - set(labels.tolist()))[:2]}",
                    "draw each type's label from the real labels, rng.choice(labels)")
    by_type = {}
    for word, label in zip(words, control):
        by_type.setdefault(word.lower(), set()).add(label)
    by_exact = {}
    for word, label in zip(words, control):
        by_exact.setdefault(word, set()).add(label)
    if any(len(v) > 1 for v in by_exact.values()):
        raise Wrong("the same word gets different control labels in different places",
                    "draw one label per word type (distinct word), then look each word up")
    if any(len(v) > 1 for v in by_type.values()):
        raise Wrong("'The' and 'the' get different control labels",
                    "lower-case each word before looking it up")
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


# ---------------------------------------------------------------------------
# Episode 05: perturbations
# ---------------------------------------------------------------------------

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


@exercise("5.1", "leave_one_out", _reference_leave_one_out,
          "Each word's score is how much p(target) drops when that one word is deleted.")
def check_leave_one_out(learner):
    words = ["good", "film", "not", "bad", "good", "!"]        # 'good' twice: delete by position
    for target in (2, 0):
        scores = learner(toy_predict_proba, list(words), target)
        want = _reference_leave_one_out(toy_predict_proba, words, target)
        shape = _shape(np.asarray(scores, dtype=float), "the result")
        if shape != want.shape:
            raise Wrong(f"it returns shape {shape} for {len(words)} words, not one score per word",
                        "compare the full text with each of the len(words) texts missing one word")
        if _close(scores, want):
            continue
        if _close(scores, -want):
            raise Wrong("the signs are flipped", "return p(all words) minus p(all words but word i)")
        without = toy_predict_proba([" ".join(words[:i] + words[i + 1:]) for i in range(len(words))])
        if _close(scores, without[:, target]):
            raise Wrong("it returns p(target) without each word, not the drop",
                        "subtract each from p(target | all words)")
        if any(_close(scores, _reference_leave_one_out(toy_predict_proba, words, other)) for other in (0, 1, 2)):
            raise Wrong(f"for target {target} it scores the other class", "take column `target` of the probabilities")
        by_value = toy_predict_proba([" ".join(words)] + [" ".join(w for w in words if w != word) for word in words])
        if _close(scores, by_value[0, target] - by_value[1:, target]):
            raise Wrong("deleting a word that occurs twice deletes both copies",
                        "delete by position, words[:i] + words[i + 1:], not by value")
        raise Wrong("the scores are not p(target | all words) - p(target | all but word i)",
                    "build the len(words) + 1 texts, call predict_proba once, and subtract")


def _reference_lime_kernel(masks, kernel_width=0.25):
    from xai_lesson.perturbation import lime_kernel
    return lime_kernel(masks, kernel_width)


@exercise("5.2", "lime_kernel", _reference_lime_kernel,
          "One weight per sample: the exponential kernel on the cosine distance to the full text, as LIME's.")
def check_lime_kernel(learner):
    from xai_lesson.perturbation import lime_masks

    masks = lime_masks(7, 12, seed=0)                          # 12 samples of 7 words: rows and columns differ
    for width in (0.25, 0.5):
        weights = learner(masks.copy(), width)
        want = _reference_lime_kernel(masks, width)
        shape = _shape(np.asarray(weights, dtype=float), "the result")
        if shape != want.shape:
            raise Wrong(f"for 12 samples of 7 words it returns shape {shape}, not one weight per sample (12,)",
                        "count the words each mask keeps along axis 1, masks.sum(1)")
        if _close(weights, want):
            continue
        kept, n = masks.sum(1), masks.shape[1]
        cosine = 1 - kept / np.sqrt(kept * n)
        if _close(weights, want ** 2):
            raise Wrong("the weights are the squares of LIME's", "take the square root: np.sqrt(np.exp(-d**2 / width**2))")
        if _close(weights, np.sqrt(np.exp(-cosine ** 2 / width))):
            raise Wrong("the kernel divides by the width, not by its square", "divide d**2 by kernel_width**2")
        if any(_close(weights, np.sqrt(np.exp(-d ** 2 / width ** 2))) for d in (1 - kept / n, np.sqrt(n - kept))):
            raise Wrong("the distance is not LIME's cosine distance to the full text",
                        "d = 1 - s / sqrt(s * n) for a mask that keeps s of n words")
        raise Wrong("the weights are not sqrt(exp(-d**2 / width**2)) of the cosine distance d",
                    "d = 1 - masks.sum(1) / np.sqrt(masks.sum(1) * n)")


# ---------------------------------------------------------------------------
# Episode 06: attacking text models
# ---------------------------------------------------------------------------

def _reference_swap_estimate(gradient, embeddings, candidate_embeddings):
    from xai_lesson.perturbation import first_order_flip_scores
    return first_order_flip_scores(gradient, embeddings, candidate_embeddings)


@exercise("6.1", "swap_estimate", _reference_swap_estimate,
          "Row i, column v is (e_v - e_i) . g_i: the first-order change of log p when token i becomes word v.")
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
        shape = _shape(got, "the result")
        if shape == (n_candidates, n_tokens) and n_tokens != n_candidates:
            raise Wrong(f"for {n_tokens} tokens and {n_candidates} candidates it has shape {shape}, "
                        f"(candidates, tokens)", "put tokens in rows: gradient @ candidate_embeddings.T")
        if shape != (n_tokens, n_candidates):
            raise Wrong(f"for {n_tokens} tokens and {n_candidates} candidates it has shape {shape}, not "
                        f"(tokens, candidates) = {(n_tokens, n_candidates)}",
                        "one dot product per token and candidate: gradient @ candidate_embeddings.T, of "
                        "shape (tokens, candidates)")
        if _close(got, want):
            continue
        new_term, old_term = g @ candidates.T, (g * e).sum(-1, keepdim=True)
        if _close(got, -want):
            raise Wrong("the signs are flipped: it estimates swapping word v back to token i",
                        "the change is new minus old, (e_v - e_i) . g_i")
        if _close(got, new_term):
            raise Wrong("it leaves out the token being replaced: it scores e_v . g_i alone",
                        "subtract each token's own term e_i . g_i, (gradient * embeddings).sum(-1, keepdim=True)")
        if _close(got, new_term - old_term.T):
            raise Wrong("column v subtracts token v's term e_v . g_v, not row i's e_i . g_i",
                        "keep the token axis when you sum: .sum(-1, keepdim=True) gives shape (tokens, 1)")
        if _close(got, want.T):
            raise Wrong("rows and columns are swapped: it has candidates in rows",
                        "put tokens in rows: gradient @ candidate_embeddings.T")
        raise Wrong("the estimates are not (e_v - e_i) . g_i",
                    "gradient @ candidate_embeddings.T - (gradient * embeddings).sum(-1, keepdim=True)")


def _reference_flip_rate(labels, original, attacked):
    labels, original, attacked = (np.asarray(a) for a in (labels, original, attacked))
    right = original == labels
    if not right.any():
        raise ValueError("no text was predicted correctly before the attack, so there is nothing to flip.")
    return float((attacked[right] != original[right]).mean())


@exercise("6.2", "flip_rate", _reference_flip_rate,
          "The share of the correctly predicted texts whose prediction the attack changed.")
def check_flip_rate(learner):
    # Three classes, ten texts: 7 predicted correctly, of which the attack flips 4; of the 3
    # already wrong, one is "fixed" by the attack (text 6) and two stay wrong.
    labels = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    original = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])
    attacked = np.array([1, 0, 2, 1, 0, 1, 1, 2, 0, 0])
    want = _reference_flip_rate(labels, original, attacked)                # 4 / 7
    got = learner(labels.copy(), original.copy(), attacked.copy())
    try:
        value = float(np.asarray(got, dtype=float))
    except (TypeError, ValueError):
        raise Wrong(f"it returns {type(got).__name__} {np.shape(got)}, not one number",
                    "return one share, a float between 0 and 1") from None
    if abs(value - want) < 1e-6:
        # A second case, in which every text was right before the attack and half flip.
        labels2 = np.array([1, 0, 1, 0])
        again = float(np.asarray(learner(labels2, labels2.copy(), np.array([0, 0, 1, 1])), dtype=float))
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
