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


# --- Episode 01 ---
# ---------------------------------------------------------------------------
# Episode 01: introduction (FGSM and the iterated attack)
# ---------------------------------------------------------------------------

TINY_MEAN, TINY_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)   # ImageNet's: a step on normalised
                                                                      # inputs is visibly not epsilon


class _PixelClassifier(torch.nn.Module):
    """A small classifier on pixel values in [0, 1] (3 classes) that normalises them itself, like pixel_logits."""

    def __init__(self):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(),      # smooth: no pixel has a zero gradient
            torch.nn.AdaptiveAvgPool2d(2), torch.nn.Flatten(), torch.nn.Linear(16, 3))
        self.register_buffer("mean", torch.tensor(TINY_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(TINY_STD).view(1, 3, 1, 1))

    def forward(self, pixels):
        return self.net((pixels - self.mean) / self.std)


class _CountedModel:
    """Wraps a model and counts the calls, to tell whether the learner's function used the model it was given."""

    def __init__(self, model):
        self.model, self.calls = model, 0

    def __call__(self, pixels):
        self.calls += 1
        return self.model(pixels)


def tiny_pixel_classifier(seed=0):
    """A small classifier on pixel values and a (1, 3, 6, 6) image in [0, 1] with pixels at and near 0 and 1."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _PixelClassifier().eval()
        pixels = torch.rand(1, 3, 6, 6) * 0.6 + 0.2               # most pixels well inside [0, 1]
    pixels[0, :, 0, :3] = torch.tensor([0.0, 0.01, 1.0])          # some at or near the edges: the clamp matters
    pixels[0, :, 5, 3:] = torch.tensor([1.0, 0.99, 0.0])
    return model, pixels


def _loss_gradient(model, pixels, label, score=False):
    """The gradient of the cross-entropy loss of `label` (or of its logit) with respect to the pixel values."""
    pixels = pixels.clone().requires_grad_(True)
    logits = model(pixels)
    target = logits[0, label] if score else torch.nn.functional.cross_entropy(logits, torch.tensor([label]))
    gradient, = torch.autograd.grad(target, pixels)
    return gradient


def _reference_fgsm(model, pixels, label, epsilon):
    pixels = pixels.clone().requires_grad_(True)
    loss = torch.nn.functional.cross_entropy(model(pixels), torch.tensor([label]))
    gradient, = torch.autograd.grad(loss, pixels)
    return (pixels + epsilon * gradient.sign()).clamp(0, 1).detach()


def _reference_iterated_fgsm(model, pixels, label, epsilon, step, n_steps):
    adversarial = pixels.clone()
    for _ in range(n_steps):
        adversarial = _reference_fgsm(model, adversarial, label, step)
        adversarial = torch.clamp(adversarial, pixels - epsilon, pixels + epsilon)
    return adversarial


def _leaves_the_image_alone(pixels, original):
    """Raise Wrong if the learner's function changed the image it was given (its values, grad or requires_grad)."""
    if pixels.grad is not None:
        raise Wrong("the gradient of this call is left in pixels.grad, and the next call adds its own to it",
                    "differentiate a copy, pixels = pixels.clone().requires_grad_(True), "
                    "with torch.autograd.grad(loss, pixels)")
    if pixels.requires_grad:
        raise Wrong("the image you passed in now requires grad", "work on a copy: pixels.clone().requires_grad_(True)")
    if not torch.equal(pixels, original):
        raise Wrong("it changed the values of the image you passed in", "return a new tensor; do not change pixels in place")


def _detached_image(result, pixels):
    if not torch.is_tensor(result):
        raise Wrong(f"it returns a {type(result).__name__}, not a torch tensor",
                    "return a tensor: the attack goes on to do tensor arithmetic with it")
    shape = tuple(result.shape)
    if shape != tuple(pixels.shape):
        raise Wrong(f"it returns shape {shape} for an image of shape {tuple(pixels.shape)}",
                    "return the whole perturbed image, with the same shape as pixels")
    if result.requires_grad:
        raise Wrong("the result is still attached to the graph (requires_grad=True)", "end with .detach()")


@exercise("1.1", "fgsm", _reference_fgsm,
          "One step up the loss of `label`: every pixel moves by epsilon, or stops at 0 or 1.")
def check_fgsm(learner):
    model, pixels = tiny_pixel_classifier()
    epsilon, original = 0.05, pixels.clone()
    inside = (pixels > 0.15) & (pixels < 0.85)                    # no clamp can bind here, for any sensible step
    for label in (0, 2, 0):                                       # the same image again: a left-over gradient adds up
        counted = _CountedModel(model)
        adversarial = learner(counted, pixels, label, epsilon)
        _leaves_the_image_alone(pixels, original)
        if counted.calls == 0:
            raise Wrong("it never calls `model`, the classifier it is given",
                        "compute the loss from model(pixels), not from pixel_logits or classifier.model")
        _detached_image(adversarial, pixels)
        want = _reference_fgsm(model, pixels, label, epsilon)
        if _close(adversarial, want):
            continue
        gradient = _loss_gradient(model, pixels, label)
        if float(gradient.abs().min()) < 1e-6:
            raise AssertionError("the check's example has a zero gradient; its sign is not defined")
        step = epsilon * gradient.sign()
        if _close(adversarial, pixels + step):
            raise Wrong("some pixel values leave [0, 1]", "clip the result to valid pixel values with .clamp(0, 1)")
        if _close(adversarial, (pixels - step).clamp(0, 1)) or _close(adversarial, pixels - step):
            raise Wrong("it steps down the loss of `label`, which makes the model more sure of it",
                        "add the step, pixels + epsilon * gradient.sign(): FGSM climbs the loss of the true class")
        score_step = epsilon * _loss_gradient(model, pixels, label, score=True).sign()
        if any(_close(adversarial, (pixels + sign * score_step).clamp(0, 1)) for sign in (1, -1)):
            raise Wrong("it follows the gradient of the score (logit) of `label`, not of the loss",
                        "differentiate the loss, F.cross_entropy(model(pixels), torch.tensor([label]))")
        moved = (_tensor(adversarial) - pixels.double()).abs()[0]          # (3, 6, 6): how far each pixel moved
        by_channel = [moved[c][inside[0, c]] for c in range(3)]
        if all(float(m.max() - m.min()) < 1e-5 for m in by_channel) and \
                not all(abs(float(m.max()) - epsilon) < 1e-5 for m in by_channel):
            sizes = ", ".join(f"{float(m.max()) / epsilon:.3f}" for m in by_channel)
            raise Wrong(f"the pixels of the three colour channels move by {sizes} x epsilon, not by epsilon: "
                        "the step was taken on normalised inputs",
                        "take the step on the pixel values in [0, 1], which `model` normalises itself "
                        "(epsilon on normalised inputs is epsilon x std in pixel values)")
        change = moved[inside[0]]
        if float(change.max() - change.min()) > 1e-5:
            raise Wrong(f"the pixels move by different amounts, from {float(change.min()):.2g} to "
                        f"{float(change.max()):.2g} for epsilon = {epsilon}",
                        "take gradient.sign(), so that every pixel moves by exactly epsilon")
        got = _tensor(adversarial)
        if float(got.min()) < 0 or float(got.max()) > 1:
            raise Wrong("some pixel values leave [0, 1]", "clip the result to valid pixel values with .clamp(0, 1)")
        raise Wrong("some pixels move by epsilon, but not in the direction that raises the loss of `label`",
                    "differentiate F.cross_entropy(model(pixels), torch.tensor([label])) with respect to the "
                    "pixel values themselves (do not normalise them: model does) and add epsilon * gradient.sign()")


@exercise("1.2", "iterated_fgsm", _reference_iterated_fgsm,
          "n_steps FGSM steps of size `step`, each projected back to within epsilon of the original image.")
def check_iterated_fgsm(learner):
    model, pixels = tiny_pixel_classifier(seed=1)
    original = pixels.clone()
    # step * n_steps is more than epsilon, so the projection must bind; then a different budget and label.
    for label, epsilon, step, n_steps in [(0, 0.05, 0.02, 5), (2, 0.04, 0.03, 3)]:
        counted = _CountedModel(model)
        adversarial = learner(counted, pixels, label, epsilon, step, n_steps)
        _leaves_the_image_alone(pixels, original)
        if counted.calls == 0:
            raise Wrong("it never calls `model`, the classifier it is given",
                        "pass it on to every step: fgsm(model, adversarial, label, step)")
        _detached_image(adversarial, pixels)
        want = _reference_iterated_fgsm(model, pixels, label, epsilon, step, n_steps)
        if _close(adversarial, want):
            continue

        def attack(*, project=True, at_end=False, restart=False, size=step, steps=n_steps, around_zero=False):
            """The iterated attack with one mistake switched on."""
            adversarial = pixels.clone()
            for _ in range(steps):
                adversarial = _reference_fgsm(model, pixels if restart else adversarial, label, size)
                if project and not at_end:
                    low, high = (-epsilon, epsilon) if around_zero else (pixels - epsilon, pixels + epsilon)
                    adversarial = torch.clamp(adversarial, low, high)
            return torch.clamp(adversarial, pixels - epsilon, pixels + epsilon) if at_end else adversarial

        if _close(adversarial, attack(around_zero=True)):
            raise Wrong("the pixel values themselves are clipped to [-epsilon, epsilon], so the image is almost black",
                        "clip to the original's values plus or minus epsilon: "
                        "torch.clamp(adversarial, pixels - epsilon, pixels + epsilon)")
        if _close(adversarial, attack(at_end=True)):
            raise Wrong("it projects only once, after the last step",
                        "clip inside the loop, after every step, so that each gradient is taken inside the budget")
        if _close(adversarial, attack(restart=True)) or _close(adversarial, attack(restart=True, project=False)):
            raise Wrong("every step starts again from the original image, so the steps do not add up",
                        "give each step the previous step's output: adversarial = fgsm(model, adversarial, label, step)")
        if _close(adversarial, attack(size=epsilon)):
            raise Wrong("each step has size epsilon, not `step`", "call fgsm with the step size: fgsm(model, adversarial, label, step)")
        if any(_close(adversarial, attack(steps=k)) for k in (n_steps - 1, n_steps + 1)):
            raise Wrong(f"it does not take n_steps = {n_steps} steps", "loop `for _ in range(n_steps):`")
        largest = float((_tensor(adversarial) - pixels.double()).abs().max())
        if largest > epsilon + 1e-6:
            raise Wrong(f"a pixel moved by {largest:.3f}, more than epsilon = {epsilon} ({n_steps} steps of {step}): "
                        "the image is not brought back to within epsilon of the original",
                        "after each step, clip back to within epsilon of the original: "
                        "torch.clamp(adversarial, pixels - epsilon, pixels + epsilon)")
        raise Wrong(f"with epsilon = {epsilon}, step = {step} and n_steps = {n_steps} the image differs from the reference",
                    "repeat n_steps times: adversarial = fgsm(model, adversarial, label, step), then "
                    "adversarial = torch.clamp(adversarial, pixels - epsilon, pixels + epsilon)")


# --- Episode 09 ---
# ---------------------------------------------------------------------------
# Episode 09: activation patching
# ---------------------------------------------------------------------------

def _toy_pair(clean_answer_id=1, corrupted_answer_id=4, tokens=5):
    """A PromptPair for the checks: two 'prompts' that differ at positions 1 and 2, and two answers."""
    from xai_lesson.patching import PromptPair

    clean_ids = torch.tensor([[3, 5, 7, 2, 6]])[:, :tokens]
    corrupted_ids = torch.tensor([[3, 8, 9, 2, 6]])[:, :tokens]
    return PromptPair(clean_ids, corrupted_ids, clean_answer_id, corrupted_answer_id)


def _reference_normalised_recovery(patched_logits, clean_logits, corrupted_logits, pair):
    from xai_lesson.patching import logit_difference, normalised_recovery

    differences = [logit_difference(torch.as_tensor(logits), pair)
                   for logits in (patched_logits, clean_logits, corrupted_logits)]
    patched, clean, corrupted = differences
    return torch.as_tensor(normalised_recovery(patched.numpy(), float(clean), float(corrupted)))


@exercise("9.1", "normalised_recovery", _reference_normalised_recovery,
          "It scores each patched run on the logit difference: 0 when the patch changes nothing, "
          "1 when it brings back the clean run.")
def check_normalised_recovery(learner):
    pair = _toy_pair()
    generator = torch.Generator().manual_seed(0)
    clean = 2 * torch.randn(7, generator=generator)
    corrupted = 2 * torch.randn(7, generator=generator)
    clean[pair.clean_answer_id], clean[pair.corrupted_answer_id] = 3.0, -1.0             # prefers the clean answer
    corrupted[pair.clean_answer_id], corrupted[pair.corrupted_answer_id] = -0.5, 2.5     # prefers the other one
    # Patched runs: the corrupted run, the clean run, halfway between, and two others.
    patched = torch.stack([corrupted, clean, (clean + corrupted) / 2, 2 * torch.randn(7, generator=generator),
                           2 * torch.randn(7, generator=generator)])
    got = learner(patched.clone(), clean.clone(), corrupted.clone(), pair)
    want = _reference_normalised_recovery(patched, clean, corrupted, pair)
    shape = _shape(got, "the result")
    if shape != (5,):
        raise Wrong(f"for 5 patched runs over a vocabulary of 7 it returns shape {shape}, not one recovery per run (5,)",
                    "take the answers' logits with logits[..., pair.clean_answer_id], which works for one run "
                    "(vocabulary,) and for many (runs, vocabulary)")
    if _close(got, want):
        one = learner(clean.clone(), clean.clone(), corrupted.clone(), pair)
        if _tensor(one).numel() != 1 or not _close(_tensor(one).reshape(()), torch.tensor(1.0)):
            raise Wrong("for a single patched run, (vocabulary,), it does not return one number, 1 for the clean run",
                        "index the vocabulary with logits[..., answer_id], not logits[answer_id] or logits[0, ...]")
        return
    if not bool((want[3:] - want[2]).abs().min() > 0.1):
        raise AssertionError("the check's example cannot tell the runs apart")
    difference = {name: logits[..., pair.clean_answer_id] - logits[..., pair.corrupted_answer_id]
                  for name, logits in (("patched", patched), ("clean", clean), ("corrupted", corrupted))}
    probabilities = [logits.softmax(-1) for logits in (patched, clean, corrupted)]
    p = [x[..., pair.clean_answer_id] - x[..., pair.corrupted_answer_id] for x in probabilities]
    p_clean_only = [x[..., pair.clean_answer_id] for x in probabilities]
    if _close(got, (p[0] - p[2]) / (p[1] - p[2])) or _close(got, (p_clean_only[0] - p_clean_only[2])
                                                              / (p_clean_only[1] - p_clean_only[2])):
        raise Wrong("it scores probabilities, not logits",
                    "take the logit difference, logits[..., clean answer] - logits[..., corrupted answer], "
                    "without a softmax")
    gap = difference["patched"] - difference["corrupted"]
    if _close(got, gap):
        raise Wrong("it is not normalised: the clean run should score 1, and it scores "
                    f"{float(gap[1]):.2f}", "divide by (clean - corrupted)")
    if _close(got, gap / difference["clean"]) or _close(got, difference["patched"] / difference["clean"]):
        raise Wrong("it divides by the clean logit difference, so the clean run does not score 1",
                    "divide by the whole gap, (clean - corrupted), and subtract corrupted from patched")
    if _close(got, 1 - want):
        raise Wrong("it is 1 - recovery: the corrupted run scores 1 and the clean run 0",
                    "(patched - corrupted) / (clean - corrupted)")
    if _close(got, difference["patched"]):
        raise Wrong("it returns the patched logit difference, not the recovery",
                    "(patched - corrupted) / (clean - corrupted)")
    raise Wrong("the recoveries differ from (patched - corrupted) / (clean - corrupted) of the logit differences",
                "compute logits[..., pair.clean_answer_id] - logits[..., pair.corrupted_answer_id] for each of the "
                "three runs, then normalise")


class _ToyTokenModel(torch.nn.Module):
    """A small causal 'language model' that reads token ids, like a Hugging Face one:
    model(input_ids=..., output_hidden_states=True) gives .logits (batch, tokens, vocabulary) and
    .hidden_states, the embeddings then each layer's output. Its layers output tuples (hidden, ...)."""

    def __init__(self, size=8, n_layers=4, vocabulary=11):
        super().__init__()
        self.embed = torch.nn.Embedding(vocabulary, size)
        self.layers = torch.nn.ModuleList(_ToyLayer(size) for _ in range(n_layers))
        self.head = torch.nn.Linear(size, vocabulary)

    def forward(self, input_ids, output_hidden_states=False):
        from types import SimpleNamespace

        hidden = self.embed(input_ids)
        states = [hidden]
        for layer in self.layers:
            output = layer(hidden)
            if not isinstance(output, tuple):
                raise Wrong("your hook returns a tensor, but the layer outputs a tuple (hidden, ...)",
                            "return `(hidden,) + tuple(output[1:])` when the output is a tuple")
            hidden = output[0]
            states.append(hidden)
        return SimpleNamespace(logits=self.head(hidden), hidden_states=tuple(states) if output_hidden_states else None)


def toy_token_model(seed=0):
    """(model, its decoder layers, a PromptPair whose prompts differ at positions 1 and 2), for the checks."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = _ToyTokenModel().eval()
    return model, model.layers, _toy_pair()


def _patch_from(model, layers, hooked, clean_state, position, ids, positions=None):
    """Last-position logits of the run on ``ids`` with ``layers[hooked]``'s output at ``position`` replaced."""
    def hook(module, inputs, output):
        hidden = output[0].clone()
        where = position if positions is None else positions
        hidden[:, where] = clean_state[:, where]
        return (hidden,) + tuple(output[1:])

    handle = layers[hooked].register_forward_hook(hook)
    try:
        with torch.inference_mode():
            return model(input_ids=ids).logits[0, -1]
    finally:
        handle.remove()


def _reference_patched_logits(model, layers, layer, position, clean_ids, corrupted_ids):
    from xai_lesson import patching

    site = patching._Site(layers[layer])
    _, (clean,) = patching.run_with_cache(model, clean_ids, [site])

    def patch(tensor):
        tensor = tensor.clone()
        tensor[:, position] = clean[position]
        return tensor

    handle = patching._register(site, patch)
    try:
        with torch.inference_mode():
            return model(input_ids=corrupted_ids).logits[0, -1]
    finally:
        handle.remove()


@exercise("9.2", "patched_logits", _reference_patched_logits,
          "It copies the clean output of that one layer at that one token into the corrupted run, "
          "and leaves no hook behind.")
def check_patched_logits(learner):
    from xai_lesson import patching
    from xai_lesson.cam import count_hooks

    model, layers, pair = toy_token_model()
    with torch.inference_mode():
        clean_run = model(input_ids=pair.clean_ids, output_hidden_states=True)
        corrupted_logits = model(input_ids=pair.corrupted_ids).logits[0, -1]
    clean_logits, states = clean_run.logits[0, -1], clean_run.hidden_states
    for layer, position in ((1, 2), (2, 1), (0, 3)):
        got = learner(model, layers, layer, position, pair.clean_ids.clone(), pair.corrupted_ids.clone())
        if count_hooks(model):
            raise Wrong("a hook is still registered on the model after your function returned",
                        "keep each handle and call handle.remove() (in a `finally:` block) after its run")
        want = _reference_patched_logits(model, layers, layer, position, pair.clean_ids, pair.corrupted_ids)
        package = patching.activation_patching(model, pair, positions=[position], site_list=list(layers))
        if abs(float(patching.logit_difference(want, pair)) - package.patched[layer, position]) > 1e-4:
            raise AssertionError("the check's reference disagrees with patching.activation_patching")
        shape = _shape(got, "the result")
        if shape in [(1, 5, 11), (5, 11)]:
            raise Wrong(f"it returns the logits at every position, shape {shape}",
                        "keep the last position of the only prompt: logits[0, -1]")
        if shape != tuple(want.shape):
            raise Wrong(f"it returns shape {shape}, not (vocabulary,) = {tuple(want.shape)}",
                        "return model(input_ids=corrupted_ids).logits[0, -1]")
        every = _patch_from(model, layers, layer, states[layer + 1], position, pair.corrupted_ids,
                            positions=slice(None))
        neighbours = [_patch_from(model, layers, hooked, states[source], position, pair.corrupted_ids)
                      for hooked in range(len(layers)) for source in range(len(states)) if source != hooked + 1
                      or hooked != layer]
        if any(_close(want, x) for x in [corrupted_logits, clean_logits, every, *neighbours]):
            raise AssertionError("the check's example cannot tell a right patch from a wrong one")
        if _close(got, want):
            continue
        if _close(got, corrupted_logits):
            raise Wrong("the logits are the corrupted run's: the patch changed nothing",
                        "a forward hook changes the output only by returning the new one: end the patching hook "
                        "with `return (hidden,) + tuple(output[1:])`, and copy from the clean run's output")
        if _close(got, every) or _close(got, clean_logits):
            raise Wrong(f"every token is patched, not only token {position}",
                        "copy one position, hidden[:, position] = clean[:, position]")
        off_by_one = [_patch_from(model, layers, layer, states[source], position, pair.corrupted_ids)
                      for source in (layer, layer + 2)]
        if any(_close(got, n) for n in off_by_one + neighbours):
            raise Wrong(f"patching layer {layer} copies in the output of another layer",
                        "copy the clean output of the layer you hook; in output_hidden_states, layer L's output is "
                        "hidden_states[L + 1], because hidden_states[0] is the embeddings")
        raise Wrong(f"at layer {layer}, token {position} the logits differ from the reference",
                    "save layers[layer]'s output on the clean run with one hook, then copy its token `position` into "
                    "the corrupted run with another")


# --- Episode 02 ---
# ---------------------------------------------------------------------------
# Episode 02: saliency maps
# ---------------------------------------------------------------------------

def tiny_smooth_cnn(seed=0):
    """A small convolutional classifier with smooth (tanh) activations, 3 classes, and two (1, 3, 5, 6) inputs.

    Smooth, so that the gradient changes all along an IG path and every quadrature rule
    gives a different answer: the IG check can tell the midpoint rule from the others."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = torch.nn.Sequential(
            torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Tanh(),
            torch.nn.Flatten(), torch.nn.Linear(4 * 5 * 6, 3))
        x = 2 * torch.randn(1, 3, 5, 6)        # large enough to bend the tanh along the path
        baseline = torch.randn(1, 3, 5, 6)
    return model.eval(), x, baseline


def _reference_vanilla_gradient(model, x, target):
    from xai_lesson.saliency import input_gradients
    return input_gradients(model, x, target)


def _input_gradient_of(model, x, score):
    """d score(model(x)) / d x for a function `score` of the logits (1, n_classes)."""
    x = x.detach().clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(score(model(x)), x)
    return grad


@exercise("2.1", "vanilla_gradient", _reference_vanilla_gradient,
          "The gradient of the target logit, shaped like x, and the same on every call.")
def check_vanilla_gradient(learner):
    model, x, _ = tiny_smooth_cnn()
    with torch.no_grad():
        logits = model(x)[0]
    target = int(logits.argsort()[1])          # neither the top class nor the last: a wrong class is caught
    want = _reference_vanilla_gradient(model, x, target)
    grads = [learner(model, x, target) for call in (1, 2)]   # twice on the same x: a gradient left on x shows up
    if x.requires_grad or x.grad is not None:
        if _close(grads[1], 2 * want):
            raise Wrong("the second call returns twice the gradient: it adds to the gradient the first call "
                        "left on x", "work on a fresh copy, x = x.clone().requires_grad_(True), so every call "
                        "starts with no gradient")
        raise Wrong("your function switched on requires_grad on the caller's x (or left a gradient on it)",
                    "work on a fresh copy, x = x.clone().requires_grad_(True), so every call starts with no gradient")
    for grad in grads:
        shape = _shape(grad, "the gradient")
        if shape != tuple(x.shape):
            if shape in [(1, 5, 6), (5, 6), (1, 1, 5, 6)]:
                raise Wrong(f"for an input of shape {tuple(x.shape)} it has shape {shape}: the colour channels are "
                            "summed or maxed away", "return the gradient itself, one number per pixel and colour "
                            "channel; the map (abs, summed over channels) is made later, to draw it")
            raise Wrong(f"for an input of shape {tuple(x.shape)} it has shape {shape}, not the input's shape",
                        "return x.grad for the copy of x you called backward through")
        if torch.is_tensor(grad) and grad.requires_grad:
            raise Wrong("the gradient is still attached to the graph (requires_grad=True)", "return x.grad.detach()")
        if _close(grad, want):
            continue
        if _close(grad, want.abs()) or _close(grad, want.abs().amax(dim=1, keepdim=True).expand_as(want)):
            raise Wrong("the gradient has lost its sign", "return the signed gradient; the abs is taken "
                        "only to draw the map")
        if _close(grad, _input_gradient_of(model, x, lambda out: out.sum())):
            raise Wrong("it is the gradient of the sum of all the logits",
                        "backpropagate the one score model(x)[0, target]")
        for other in range(logits.numel()):
            if other != target and _close(grad, _reference_vanilla_gradient(model, x, other)):
                top = " (the top class)" if other == int(logits.argmax()) else ""
                raise Wrong(f"it is the gradient of class {other}'s logit{top}, not of class {target}'s",
                            "take the logit of the class you were given: model(x)[0, target]")
        if _close(grad, _input_gradient_of(model, x, lambda out: torch.softmax(out, dim=1)[0, target])) or \
                _close(grad, _input_gradient_of(model, x, lambda out: torch.log_softmax(out, dim=1)[0, target])):
            raise Wrong("it is the gradient of the softmax probability, not of the logit",
                        "explain the logit, model(x)[0, target], before any softmax")
        raise Wrong("it is not the gradient of the target logit with respect to x",
                    "x = x.clone().requires_grad_(True); model(x)[0, target].backward(); return x.grad.detach()")


def _reference_integrated_gradients_by_hand(model, x, target, baseline, steps, batch_size=4):
    from xai_lesson.saliency import integrated_gradients
    return integrated_gradients(model, x, target, baseline=baseline, steps=steps, batch_size=batch_size,
                                rule="midpoint")


def _path_gradients(model, x, target, baseline, alphas):
    """The target logit's gradient at each point baseline + alpha (x - baseline), stacked: (len(alphas), ...)."""
    path = baseline + torch.as_tensor(alphas, dtype=x.dtype).view(-1, *[1] * (x.ndim - 1)) * (x - baseline)
    return _input_gradient_of(model, path, lambda out: out[:, target].sum())


@exercise("2.2", "integrated_gradients_by_hand", _reference_integrated_gradients_by_hand,
          "It matches saliency.integrated_gradients, and with 128 steps its attributions add up to "
          "f(x) - f(baseline) within 0.1 %.")
def check_integrated_gradients_by_hand(learner):
    model, x, random_baseline = tiny_smooth_cnn()
    target, steps = 1, 6                       # 6 points in batches of 4: the last batch is a short one
    for baseline in (torch.zeros_like(x), random_baseline):
        got = learner(model, x.clone(), target, baseline.clone(), steps, batch_size=4)
        want = _reference_integrated_gradients_by_hand(model, x, target, baseline, steps)
        shape = _shape(got, "the result")
        if shape != tuple(x.shape):
            if len(shape) == len(x.shape) and shape[0] == steps:
                raise Wrong(f"for an input of shape {tuple(x.shape)} and {steps} steps it has shape {shape}: "
                            "one map per point on the path", "average the gradients over the points, "
                            "dim 0, with .mean(0, keepdim=True)")
            raise Wrong(f"for an input of shape {tuple(x.shape)} it has shape {shape}, not the input's shape",
                        "average the path's gradients over dim 0 (the points) and multiply by (x - baseline)")
        if _close(got, want):
            continue
        midpoints = (torch.arange(steps, dtype=torch.float64) + 0.5) / steps
        grads = _path_gradients(model, x, target, baseline, midpoints)
        mean_grad = grads.mean(0, keepdim=True)
        if _close(got, mean_grad):
            raise Wrong("the result is the average gradient alone", "multiply it by (x - baseline)")
        if baseline.abs().sum() > 0 and _close(got, mean_grad * x):
            raise Wrong("it multiplies by x, which is right only for a zero baseline",
                        "multiply by (x - baseline)")
        if _close(got, grads.sum(0, keepdim=True) * (x - baseline)):
            raise Wrong(f"the result is {steps} times too large with {steps} steps: the gradients are summed",
                        "average them over the points with .mean(0)")
        if _close(got, grads.mean() * (x - baseline)) or _close(got, grads.mean(dim=(0, 1), keepdim=True)
                                                                * (x - baseline)):
            raise Wrong("the gradients are averaged over more than the path's points (dim 0)",
                        "average over dim 0 only, the points, with .mean(0, keepdim=True)")
        for name, alphas in [("both end points, torch.linspace(0, 1, steps)", torch.linspace(0, 1, steps)),
                             ("the baseline but not the input", torch.arange(steps) / steps),
                             ("the input but not the baseline", (torch.arange(steps) + 1) / steps),
                             ("both end points, torch.linspace(0, 1, steps + 1)", torch.linspace(0, 1, steps + 1))]:
            if _close(got, _path_gradients(model, x, target, baseline, alphas.double()).mean(0, keepdim=True)
                      * (x - baseline)):
                raise Wrong(f"the points on the path include {name}: that is not the midpoint rule",
                            "put one point in the middle of each of the steps intervals, "
                            "alphas = (torch.arange(steps) + 0.5) / steps")
        if _close(got, _path_gradients(model, x, target, baseline, midpoints[:4]).mean(0, keepdim=True)
                  * (x - baseline)):
            raise Wrong("only the first batch of points is used", "loop over every batch, "
                        "range(0, steps, batch_size), and keep the gradients of each")
        raise Wrong("the result is not (x - baseline) times the mean gradient at the midpoints of the path",
                    "compare your function, step by step, with the formula in the episode")
    # The property the episode checks next: completeness, on the reference with many steps.
    baseline = random_baseline
    got = learner(model, x.clone(), target, baseline.clone(), 128, batch_size=32)
    with torch.no_grad():
        delta = (model(x)[0, target] - model(baseline)[0, target]).item()
    error = abs(_tensor(got).sum().item() - delta) / abs(delta)
    if error > 1e-3:
        raise Wrong(f"with 128 steps the attributions sum to {_tensor(got).sum().item():.4f}, not to "
                    f"f(x) - f(baseline) = {delta:.4f}", "compare your function with the formula in the episode")


# --- Episode 03 ---
# ---------------------------------------------------------------------------
# Episode 03: evaluating saliency maps against a known ground truth
# ---------------------------------------------------------------------------

def patch_scoring_example():
    """Small signed attributions (5, 3, 5, 7) and their masks (5, 5, 7), built so that the usual
    slips in mass_inside and pointing_game each give a different answer. Image 4's map is all zeros."""
    generator = torch.Generator().manual_seed(3)
    maps = 0.3 * torch.randn(5, 3, 5, 7, generator=generator)        # non-square: rows and columns differ
    masks = torch.zeros(5, 5, 7, dtype=torch.bool)
    for i, (top, left) in enumerate([(0, 0), (1, 3), (2, 1), (3, 4), (1, 1)]):
        masks[i, top:top + 2, left:left + 3] = True                  # a 2 x 3 patch
    maps[0, :, 0, 1] = torch.tensor([2.0, 1.5, 1.0])                 # 0: a positive peak inside
    maps[1, :, 4, 0] = torch.tensor([2.0, 2.0, 1.0])                 # 1: the peak is outside ...
    maps[1, :, 1, 4] = torch.tensor([3.0, 0.0, 0.0])                 #    ... one strong colour inside
    maps[2, :, 3, 2] = torch.tensor([-3.0, -2.0, -2.0])              # 2: a negative peak inside ...
    maps[2, :, 0, 6] = torch.tensor([1.5, 1.0, 1.0])                 #    ... and a smaller positive one outside
    maps[3, :, 0, 0] = torch.tensor([4.0, -4.0, 0.5])                # 3: colours that cancel, outside ...
    maps[3, :, 3, 5] = torch.tensor([1.5, 1.5, 1.5])                 #    ... and a peak of their sum inside
    maps[3, :, 2, 2] = torch.tensor([3.5, 0.0, 0.0])                 #    ... and one strong colour, outside
    maps[4] = 0.0
    return maps, masks


def _magnitude(maps):
    return maps.abs().sum(dim=1)


def _shares(heat, masks, total=None, positive_only=False):
    """Share of ``heat`` inside ``masks`` per map; 0 where the total is 0 (or not positive)."""
    heat = heat.to(torch.float64)
    inside = (heat * masks).flatten(1).sum(1)
    total = heat.flatten(1).sum(1) if total is None else total
    keep = total > 0 if positive_only else total != 0
    return np.asarray(torch.where(keep, inside / torch.where(keep, total, 1.0), 0.0))


def _reference_mass_inside(maps, masks):
    from xai_lesson.synthetic import mass_inside
    return mass_inside(maps, masks)


def _reference_pointing_game(maps, masks):
    from xai_lesson.synthetic import pointing_game
    return pointing_game(maps, masks)


def _numpy_result(value, n):
    if torch.is_tensor(value):
        raise Wrong("it returns a torch tensor, and the score table indexes the result with NumPy",
                    "end with .numpy() to return a NumPy array")
    shape = () if isinstance(value, (float, int, np.generic)) else _shape(value, "the result")
    if shape == ():
        raise Wrong(f"it returns one number for {n} maps",
                    "compute one score per map: flatten each map with .flatten(1) and reduce over dim 1")
    if shape != (n,):
        raise Wrong(f"for {n} maps it returns shape {shape}, not one score per map ({n},)",
                    "sum the absolute values over the colour channels (dim 1), flatten each map with "
                    ".flatten(1) and reduce over dim 1")
    return np.asarray(value, dtype=np.float64)


@exercise("3.1", "mass_inside", _reference_mass_inside,
          "One share per map: its absolute attribution inside the patch over its total, 0 for an empty map.")
def check_mass_inside(learner):
    maps, masks = patch_scoring_example()
    got = _numpy_result(learner(maps.clone(), masks.clone()), len(maps))
    want = np.asarray(_reference_mass_inside(maps, masks), dtype=np.float64)
    live = slice(0, 4)                                               # the maps that are not all zeros
    if _close(got[live], want[live]):
        if not np.isfinite(got[4]) or got[4] != 0:
            raise Wrong(f"a map of zeros scores {got[4]}, not 0",
                        "return 0 where the total is 0: torch.where(total > 0, inside / total, 0.0)")
        return
    heat = _magnitude(maps)
    signed = maps.sum(dim=1)
    mistakes = [
        *[(_shares(signed, masks, positive_only=positive), "it uses the signed map, so negative attribution "
           "cancels positive", "take absolute values, maps.abs(), before you sum: a large negative attribution "
           "is evidence too") for positive in (False, True)],
        (_shares(signed.abs(), masks), "it adds the colour channels before taking absolute values, so they cancel",
         "take the absolute value of each channel first, then sum over the channels: maps.abs().sum(dim=1)"),
        (1 - want, "it gives the share outside the patch",
         "`masks` is True inside the patch: multiply by masks, not by ~masks"),
        (_shares(heat, masks, total=torch.ones(len(maps), dtype=torch.float64)),
         "it returns the attribution inside the patch, not its share", "divide by each map's total absolute attribution"),
        (_shares(heat, masks, total=heat.to(torch.float64).sum().expand(len(maps))),
         "it divides by the total of all the maps together",
         "divide each map by its own total, magnitude.flatten(1).sum(dim=1)"),
        (want * masks.shape[1] * masks.shape[2] / masks.flatten(1).sum(1).double().numpy(),
         "it divides the mean inside the patch by the mean of the whole map", "divide the sums, not the means"),
    ]
    for candidate, what, hint in mistakes:
        if _close(got[live], np.asarray(candidate)[live]):
            raise Wrong(what, hint)
    raise Wrong("the shares differ from the reference",
                "magnitude = maps.abs().sum(dim=1); (magnitude * masks).flatten(1).sum(1) / magnitude.flatten(1).sum(1)")


@exercise("3.2", "pointing_game", _reference_pointing_game,
          "One answer per map: True where its largest absolute value lies inside the patch.")
def check_pointing_game(learner):
    maps, masks = patch_scoring_example()
    maps, masks = maps[:4], masks[:4]                                # an all-zero map has no peak
    result = learner(maps.clone(), masks.clone())
    if not isinstance(result, (bool, int, float, np.generic)) and \
            _shape(result, "the result") == (masks.shape[1] * masks.shape[2],):
        raise Wrong(f"it returns {masks.shape[1] * masks.shape[2]} answers, one per pixel: the argmax runs "
                    "over the maps (dim 0)", "flatten each map with .flatten(1) and take .argmax(dim=1)")
    got = _numpy_result(result, len(maps))
    want = np.asarray(_reference_pointing_game(maps, masks), dtype=np.float64)
    if not set(np.unique(got)) <= {0.0, 1.0}:
        raise Wrong("it returns numbers other than True and False, maybe the peaks' positions",
                    "look each peak up in its mask: masks.flatten(1)[torch.arange(n), peak]")
    if _close(got, want):
        if not (want.any() and not want.all()):
            raise AssertionError("the check's example needs hits and misses")
        return

    def hits(heat):
        peak = heat.flatten(1).argmax(dim=1)
        return masks.flatten(1)[torch.arange(len(peak)), peak].double().numpy()

    signed = maps.sum(dim=1)
    everywhere = _magnitude(maps).flatten().argmax() % (masks.shape[1] * masks.shape[2])
    mistakes = [
        (hits(signed), "it looks for the largest signed value, so it misses a strong negative peak",
         "take absolute values, maps.abs(), before the argmax: a large negative attribution is a peak too"),
        (hits(signed.abs()), "it adds the colour channels before taking absolute values, so they cancel",
         "take the absolute value of each channel first, then sum over the channels: maps.abs().sum(dim=1)"),
        (1 - want, "it says True where the peak is outside the patch",
         "`masks` is True inside the patch: a hit is a peak where the mask is True"),
        (masks.flatten(1)[:, everywhere].double().numpy(), "it takes one peak for the whole batch",
         "take one peak per map: magnitude.flatten(1).argmax(dim=1)"),
        (hits(maps.abs().amax(dim=1)), "it takes the largest channel at each pixel, not the sum over the channels",
         "sum the absolute values over the channels: maps.abs().sum(dim=1)"),
    ]
    for candidate, what, hint in mistakes:
        if _close(got, candidate):
            raise Wrong(what, hint)
    raise Wrong("the hits differ from the reference",
                "peak = maps.abs().sum(dim=1).flatten(1).argmax(dim=1); masks.flatten(1)[torch.arange(n), peak]")


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
