"""Checks for episode 09's code-along exercises: activation patching."""

import torch

from .ep08 import _ToyLayer
from .harness import ARRAY, Wrong, as_double, close, exercise


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


def _fresh_logits(seed):
    """Logits of 1 + seed patched runs, a clean and a corrupted run over 6 + seed words, and another pair of answers."""
    generator = torch.Generator().manual_seed(seed)
    pair = _toy_pair(clean_answer_id=seed, corrupted_answer_id=seed + 3)
    patched, clean, corrupted = (torch.randn(1 + seed, 6 + seed, generator=generator),
                                 torch.randn(6 + seed, generator=generator), torch.randn(6 + seed, generator=generator))
    clean[pair.clean_answer_id] += 3.0                   # the clean run prefers the clean answer
    corrupted[pair.corrupted_answer_id] += 3.0           # and the corrupted run the other one
    return patched, clean, corrupted, pair


@exercise("9.1", "normalised_recovery", _reference_normalised_recovery,
          "It scores each patched run on the logit difference: 0 when the patch changes nothing, "
          "1 when it brings back the clean run.",
          returns=ARRAY, fresh=_fresh_logits)
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
    shape = tuple(got.shape)
    if shape != (5,):
        raise Wrong(f"for 5 patched runs over a vocabulary of 7 it returns shape {shape}, not one recovery per run (5,)",
                    "take the answers' logits with logits[..., pair.clean_answer_id], which works for one run "
                    "(vocabulary,) and for many (runs, vocabulary)")
    if close(got, want):
        one = learner(clean.clone(), clean.clone(), corrupted.clone(), pair)
        if as_double(one).numel() != 1 or not close(as_double(one).reshape(()), torch.tensor(1.0)):
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
    if close(got, (p[0] - p[2]) / (p[1] - p[2])) or close(got, (p_clean_only[0] - p_clean_only[2])
                                                              / (p_clean_only[1] - p_clean_only[2])):
        raise Wrong("it scores probabilities, not logits",
                    "take the logit difference, logits[..., clean answer] - logits[..., corrupted answer], "
                    "without a softmax")
    gap = difference["patched"] - difference["corrupted"]
    if close(got, gap):
        raise Wrong("it is not normalised: the clean run should score 1, and it scores "
                    f"{float(gap[1]):.2f}", "divide by (clean - corrupted)")
    if close(got, gap / difference["clean"]) or close(got, difference["patched"] / difference["clean"]):
        raise Wrong("it divides by the clean logit difference, so the clean run does not score 1",
                    "divide by the whole gap, (clean - corrupted), and subtract corrupted from patched")
    if close(got, 1 - want):
        raise Wrong("it is 1 - recovery: the corrupted run scores 1 and the clean run 0",
                    "(patched - corrupted) / (clean - corrupted)")
    if close(got, difference["patched"]):
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


def _fresh_patch(seed):
    """Another toy model and prompts of 3 + seed tokens; patch layer `seed` at token `seed`."""
    model, layers, _ = toy_token_model(seed)
    pair = _toy_pair(tokens=3 + seed)
    return model, layers, seed, seed, pair.clean_ids, pair.corrupted_ids


@exercise("9.2", "patched_logits", _reference_patched_logits,
          "It copies the clean output of that one layer at that one token into the corrupted run, "
          "and leaves no hook behind.",
          returns=ARRAY, fresh=_fresh_patch)
def check_patched_logits(learner):
    from xai_lesson import patching

    model, layers, pair = toy_token_model()
    with torch.inference_mode():
        clean_run = model(input_ids=pair.clean_ids, output_hidden_states=True)
        corrupted_logits = model(input_ids=pair.corrupted_ids).logits[0, -1]
    clean_logits, states = clean_run.logits[0, -1], clean_run.hidden_states
    for layer, position in ((1, 2), (2, 1), (0, 3)):
        got = learner(model, layers, layer, position, pair.clean_ids.clone(), pair.corrupted_ids.clone())
        want = _reference_patched_logits(model, layers, layer, position, pair.clean_ids, pair.corrupted_ids)
        package = patching.activation_patching(model, pair, positions=[position], site_list=list(layers))
        if abs(float(patching.logit_difference(want, pair)) - package.patched[layer, position]) > 1e-4:
            raise AssertionError("the check's reference disagrees with patching.activation_patching")
        shape = tuple(got.shape)
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
        if any(close(want, x) for x in [corrupted_logits, clean_logits, every, *neighbours]):
            raise AssertionError("the check's example cannot tell a right patch from a wrong one")
        if close(got, want):
            continue
        if close(got, corrupted_logits):
            raise Wrong("the logits are the corrupted run's: the patch changed nothing",
                        "a forward hook changes the output only by returning the new one: end the patching hook "
                        "with `return (hidden,) + tuple(output[1:])`, and copy from the clean run's output")
        if close(got, every) or close(got, clean_logits):
            raise Wrong(f"every token is patched, not only token {position}",
                        "copy one position, hidden[:, position] = clean[:, position]")
        off_by_one = [_patch_from(model, layers, layer, states[source], position, pair.corrupted_ids)
                      for source in (layer, layer + 2)]
        if any(close(got, n) for n in off_by_one + neighbours):
            raise Wrong(f"patching layer {layer} copies in the output of another layer",
                        "copy the clean output of the layer you hook; in output_hidden_states, layer L's output is "
                        "hidden_states[L + 1], because hidden_states[0] is the embeddings")
        raise Wrong(f"at layer {layer}, token {position} the logits differ from the reference",
                    "save layers[layer]'s output on the clean run with one hook, then copy its token `position` into "
                    "the corrupted run with another")
