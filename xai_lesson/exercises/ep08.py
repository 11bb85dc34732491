"""Checks for episode 08's code-along exercises: causal tracing."""

import torch

from .harness import ARRAY, Returns, Wrong, as_double, close, exercise


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


def _fresh_clean_state(seed):
    """A clean layer output (tokens, size) of 4 + seed tokens, and the token to restore."""
    return torch.randn(4 + seed, 3 + seed, generator=torch.Generator().manual_seed(seed)), seed


def _same_hook(got, want, arguments):
    """Whether two hooks make the same output of a layer whose output is a tuple (hidden, extra)."""
    clean, _ = arguments
    hidden = torch.randn(3, *clean.shape, generator=torch.Generator().manual_seed(len(clean)))
    extra = torch.zeros(1)
    mine = got(torch.nn.Identity(), (hidden,), (hidden.clone(), extra))
    theirs = want(torch.nn.Identity(), (hidden,), (hidden.clone(), extra))
    return isinstance(mine, tuple) and len(mine) == 2 and mine[1] is extra and close(mine[0], theirs[0])


HOOK = Returns("a hook (a function)", callable,
               "define `def hook(module, inputs, output):` inside it and `return hook`")


@exercise("8.1", "restore_hook", _reference_restore_hook,
          "The hook copies the clean state into that position of every noisy sample, and passes the rest on.",
          returns=HOOK, fresh=_fresh_clean_state, same=_same_hook)
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
            hidden = as_double(got[0])
            if hidden.shape != original.shape:
                raise Wrong(f"the hidden state has shape {tuple(hidden.shape)}, not {tuple(original.shape)}",
                            "clone output[0] and assign into hidden[:, token]")
            if close(hidden, want[0]):
                continue
            if close(hidden[0], want[0][0]) and not close(hidden[1:], want[0][1:]):
                raise Wrong("only the first noisy sample is restored",
                            "copy into every sample, hidden[:, token], not hidden[0, token]")
            if close(hidden, clean_outputs[1].expand_as(hidden)):
                raise Wrong("every position is restored, not only `token`",
                            "assign to hidden[:, token] = clean[token]")
            raise Wrong(f"at token {token} the hidden state is not the noisy one with clean[token] copied in",
                        "hidden[:, token] = clean[token], and leave the other positions as they are")


def _reference_restored_logits(model, layers, clean_outputs, layer, token, embeds):
    from xai_lesson.tracing import restored_logits
    return restored_logits(model, layers, clean_outputs, layer, token, embeds)


def _fresh_tracing(seed):
    """Another toy model and prompt of 4 + seed tokens; restore layer `seed` at token `seed + 1`."""
    model, layers, clean_outputs, _, noisy = toy_language_model(seed, tokens=4 + seed)
    return model, layers, clean_outputs, seed, seed + 1, noisy


@exercise("8.2", "restored_logits", _reference_restored_logits,
          "It matches the reference at every layer, gives back the clean run when every position is "
          "restored, and removes its hook.",
          returns=ARRAY, fresh=_fresh_tracing)
def check_restored_logits(learner):
    model, layers, clean_outputs, clean, noisy = toy_language_model()
    with torch.inference_mode():
        clean_logits = model(inputs_embeds=clean).logits[:, -1]
    last = len(layers) - 1
    for layer in range(len(layers)):
        for token in (2, 4, slice(1, None)):
            got = learner(model, layers, clean_outputs, layer, token, noisy.clone())
            want = _reference_restored_logits(model, layers, clean_outputs, layer, token, noisy)
            shape = tuple(got.shape)
            if shape == (noisy.shape[0], noisy.shape[1], want.shape[-1]):
                raise Wrong(f"it returns the logits at every position, shape {shape}",
                            "keep the next-token logits, the last position: logits[:, -1]")
            if shape != tuple(want.shape):
                raise Wrong(f"it returns shape {shape}, not (samples, vocabulary) = {tuple(want.shape)}",
                            "return model(inputs_embeds=embeds).logits[:, -1]")
            if close(got, want):
                continue
            if close(got, want.softmax(-1)) or close(got, want.log_softmax(-1)):
                raise Wrong("it returns probabilities, not logits", "return the logits; restore() applies the softmax")
            # Another layer hooked, or another layer's clean output copied in:
            neighbours = [_reference_restored_logits(model, layers, {hooked: clean_outputs[copied]}, hooked, token, noisy)
                          for hooked in range(len(layers)) for copied in range(len(layers))
                          if (hooked, copied) != (layer, layer)]
            if any(close(got, n) for n in neighbours) or (layer == last and token == slice(1, None)
                                                           and not close(got, clean_logits)):
                raise Wrong(f"restoring layer {layer} restores another layer (restoring every position of the last "
                            "layer must give back the clean logits)",
                            "hook layers[layer] and copy in clean_outputs[layer], the same index for both")
            raise Wrong(f"at layer {layer}, token {token} the logits differ from the reference",
                        "register restore_hook(clean_outputs[layer], token) on layers[layer], then run "
                        "model(inputs_embeds=embeds)")
