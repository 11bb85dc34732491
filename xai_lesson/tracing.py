"""Causal tracing (Meng et al. 2022, "Locating and Editing Factual Associations in GPT").

Three runs of a causal language model on a factual prompt such as
"The Eiffel Tower is located in the city of" -> " Paris":

1. the *clean* run, on the prompt as written, gives p(answer);
2. the *corrupted* run adds Gaussian noise to the input embeddings of the
   subject's tokens ("The Eiffel Tower"), which usually destroys the answer;
3. each *restored* run copies one clean state (a layer's output at one token,
   or a window of MLP or attention outputs) into the corrupted run.

The *indirect effect* of a state is p(answer | restored) - p(answer | corrupted).

Everything works through torch forward hooks on the decoder layers and their
MLP and attention submodules, so the same code runs on SmolLM2 (Llama
architecture, offline) and on GPT-2. ``xai_lesson.transformer.ARCHITECTURES`` is
the only place that names modules.

``causal_trace(..., method="fast")`` batches many restorations into one forward
pass and reuses work that cannot change: it starts each pass at the patched
token, with the corrupted run's keys and values of the earlier positions (causal
attention shields them from the patch), and it replays the corrupted run's cached
outputs for the layers below the lowest patched layer instead of computing them
again. ``method="straightforward"`` runs one forward pass per (layer, token,
noise sample), as the paper's code does; both give the same scores.
"""

import csv
import math
import numbers
import warnings
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch

from xai_lesson import validate
# The architecture lookups live in xai_lesson.transformer; tracing.model_modules stays as a name
# because episode 08 teaches it.
from xai_lesson.transformer import ARCHITECTURES, hooks as _hooks, layer_output as _hidden, model_modules  # noqa: F401
from xai_lesson.transformer import with_layer_output as _with_hidden

KINDS = ("hidden", "mlp", "attn")
# The fast tracer's default batch: at most this many rows (restorations x noise samples) per forward pass,
# so that merging several traces of one prompt keeps the memory of a pass of 30 layers x 10 samples or so.
_ROWS_PER_PASS = 300
FACTS_CSV = "facts/known_facts.csv"
CATEGORIES = ("first subject token", "middle subject tokens", "last subject token",
              "first subsequent token", "further tokens", "last token")


def _check_kind(kind):
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")


def subject_token_range(tokenizer, prompt, subject):
    """(start, end) token positions covering the first occurrence of ``subject`` in ``prompt``.

    The subject's character span is mapped to tokens with the tokenizer's offsets,
    so a token that overlaps the span by one character counts as a subject token.
    """
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be one string, got {type(prompt).__name__}; trace one prompt at a time, "
                        "for example in a loop over your prompts.")
    if not isinstance(subject, str) or not subject.strip():
        raise ValueError("subject must be a non-empty string, for example 'The Eiffel Tower'.")
    begin = prompt.find(subject)
    if begin < 0:
        raise ValueError(f"The subject {subject!r} does not occur in the prompt {prompt!r}. "
                         "Give the subject exactly as it is written in the prompt (case and spaces count).")
    end = begin + len(subject)
    encoded = tokenizer(prompt, return_offsets_mapping=True, add_special_tokens=False)
    positions = [i for i, (s, e) in enumerate(encoded["offset_mapping"]) if s < end and e > begin]
    return positions[0], positions[-1] + 1


def answer_token_id(tokenizer, answer):
    """Id of the first token of ``answer`` (write the leading space: " Paris")."""
    if not isinstance(answer, str):
        raise TypeError(f"answer must be a string such as ' Paris', got {type(answer).__name__}.")
    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    if not ids:
        raise ValueError(f"answer {answer!r} gives no tokens; use a word with its leading space, e.g. ' Paris'.")
    _check_answer(tokenizer, answer, ids)
    return ids[0]


def _check_answer(tokenizer, answer, ids):
    """Warn when the traced token is probably not the answer the learner meant."""
    suggestion = " " + answer.strip()
    if answer.strip() and not answer[0].isspace():
        warnings.warn(f"The answer {answer!r} has no leading space, so its token {tokenizer.decode(ids[:1])!r} "
                      f"(id {ids[0]}) is the one for the middle of a word, which the model rarely predicts "
                      f"after a prompt. Write the answer with its leading space: {suggestion!r}.",
                      UserWarning, stacklevel=3)
        return
    first_word = tokenizer(" " + answer.split()[0], add_special_tokens=False)["input_ids"]
    if len(first_word) > 1:
        warnings.warn(f"The answer {answer!r} starts with a word that is {len(first_word)} tokens "
                      f"({[tokenizer.decode([i]) for i in first_word]}); only the first, "
                      f"{tokenizer.decode(first_word[:1])!r}, is traced. Check that this token is what you "
                      "want to trace, or pick an answer that is one token.", UserWarning, stacklevel=3)


def _warn_unlikely_answer(tokenizer, answer, answer_id, clean_prob):
    if clean_prob < 0.01:
        warnings.warn(f"The model gives the answer {answer!r} (token {tokenizer.decode([answer_id])!r}) only "
                      f"p = {clean_prob:.4f} on the clean prompt, so there is little for tracing to restore. "
                      f"Check the answer (its leading space: {' ' + answer.strip()!r}), or pass answer=None to "
                      "trace the model's own top prediction.", UserWarning, stacklevel=4)


def load_known_facts():
    """The lesson's factual prompts (data/facts/known_facts.csv) as a list of dicts.

    Keys: prompt, subject, answer (with its leading space), relation. SmolLM2-135M
    gives each answer's first token as its top prediction.
    """
    from xai_lesson.data import verified_file

    with open(verified_file(FACTS_CSV), newline="", encoding="utf-8") as stream:
        return list(csv.DictReader(stream))


def embedding_noise_scale(model, tokenizer, subjects=None, factor=3.0):
    """``factor`` times the standard deviation of the input embeddings of ``subjects``' tokens.

    The paper uses 3 x the standard deviation over the subjects of its fact set;
    ``subjects=None`` uses the subjects of ``load_known_facts()``.
    """
    if subjects is None:
        subjects = [fact["subject"] for fact in load_known_facts()]
    if isinstance(subjects, str) or not subjects or not all(isinstance(s, str) and s.strip() for s in subjects):
        raise ValueError("subjects must be a non-empty list of non-empty strings.")
    validate.number(factor, "factor", minimum=0)
    ids = [i for s in subjects for i in tokenizer(" " + s.strip(), add_special_tokens=False)["input_ids"]]
    embed = model_modules(model)["embed"]
    validate.token_ids(ids, embed.num_embeddings, "the subjects' token ids")
    with torch.inference_mode():
        vectors = embed(torch.tensor(ids))
    return float(factor * vectors.std())


def restore_hook(clean, token):
    """A forward hook that copies ``clean[token]`` into position ``token`` of a layer's output, in every batch row.

    ``clean`` is the layer's clean output for one prompt, (tokens, hidden size);
    ``token`` is a position or a slice. The layer may output a tensor or a tuple whose
    first element is the hidden state (transformers' decoder layers); the rest of a
    tuple is passed on unchanged.
    """
    if not torch.is_tensor(clean) or clean.ndim != 2:
        raise ValueError(f"clean must be one layer's output for one prompt, (tokens, hidden size); got "
                         f"{clean.shape if torch.is_tensor(clean) else type(clean).__name__}.")
    if not isinstance(token, slice):
        validate.index(token, clean.shape[0], "token", "tokens in clean")
    def hook(module, args, output):
        hidden = _hidden(output).clone()
        hidden[:, token] = clean[token]
        return _with_hidden(output, hidden)
    return hook


def restored_logits(model, layers, clean_outputs, layer, token, embeds):
    """Next-token logits (samples, vocabulary) of each corrupted run in ``embeds`` (samples, tokens, hidden),
    with the clean output of decoder layer ``layer`` at ``token`` copied in.

    ``layers`` are the decoder layers (``model_modules(model)["layers"]``) and
    ``clean_outputs[layer]`` their clean outputs (tokens, hidden). The hook is removed afterwards.
    """
    validate.index(layer, len(layers), "layer", "layers")
    validate.module_of(layers[layer], model, "layers[layer]")
    if not torch.is_tensor(embeds) or embeds.ndim != 3:
        raise ValueError(f"embeds must be (samples, tokens, hidden) input embeddings, got "
                         f"{embeds.shape if torch.is_tensor(embeds) else type(embeds).__name__}.")
    validate.matching_dtype(embeds, model, "embeds")
    validate.context_length(embeds.shape[1], model)
    with _hooks([(layers[layer], restore_hook(clean_outputs[layer], token))]), torch.inference_mode():
        return model(inputs_embeds=embeds).logits[:, -1]


@contextmanager
def _staircase(layers, active, templates, fills):
    """Let each layer compute only the rows that need it, and replay the corrupted run for the rest.

    The rows of a pass are sorted by the first layer that must be recomputed for
    them, so at layer ``i`` the rows that need computing are the first
    ``active[i]``. The other rows still hold the corrupted run, whose output at
    this layer is known: ``fills(i, rows)`` gives it, and ``templates[i]`` (the
    layer's output in the corrupted run) gives the structure the layer returns.
    Attention masks that have one row per batch entry (4-D tensors whose first
    dimension is the batch) are cut to the active rows; everything else is passed
    on unchanged. The model's own loop over layers still runs, so module names and
    calling conventions of the architecture do not matter.
    """
    def wrap(index, forward):
        def layer_forward(hidden_states, *args, **kwargs):
            rows, computed = hidden_states.shape[0], active[index]
            if computed == rows:
                return forward(hidden_states, *args, **kwargs)
            if computed == 0:
                return _with_hidden(templates[index], fills(index, rows))

            def cut(value):
                if torch.is_tensor(value) and value.ndim == 4 and value.shape[0] == rows:
                    return value[:computed]
                return value

            output = forward(hidden_states[:computed], *map(cut, args), **{k: cut(v) for k, v in kwargs.items()})
            hidden = torch.cat([_hidden(output), fills(index, rows - computed)])
            return _with_hidden(output, hidden)
        return layer_forward

    # A layer may already carry its own ``forward`` attribute (accelerate's hooks on a model loaded with
    # ``device_map`` wrap it this way): keep it, wrap it, and put exactly it back afterwards.
    missing = object()
    previous = [layer.__dict__.get("forward", missing) for layer in layers]
    try:
        for index, layer in enumerate(layers):
            layer.forward = wrap(index, layer.forward)
        yield
    finally:
        for layer, before in zip(layers, previous):
            if before is missing:
                layer.__dict__.pop("forward", None)
            else:
                layer.forward = before


def _window(layer, window, n_layers):
    """Layers restored together for a patch at ``layer``: a window centred on it (as in the paper)."""
    return range(max(0, layer - window // 2), min(n_layers, layer - (-window // 2)))


def _patched_layers(layer, kind, window, n_layers):
    return range(layer, layer + 1) if kind == "hidden" else _window(layer, window, n_layers)


@dataclass
class TraceResult:
    """What ``causal_trace`` returns. ``scores[layer, token]`` is an indirect effect.

    ``log_scores`` holds the same restorations scored in log-probability: the mean over
    noise samples of log p(answer | restored) minus that of log p(answer | corrupted)
    (in nats). ``clean_log_prob`` and ``corrupted_log_prob`` are the two ends of its scale.
    """

    scores: np.ndarray
    clean_prob: float
    corrupted_prob: float
    answer: str
    answer_id: int
    tokens: list
    subject_range: tuple
    kind: str
    window: int
    noise: float
    samples: int
    method: str = field(default="fast")
    log_scores: np.ndarray = field(default=None)
    clean_log_prob: float = field(default=float("nan"))
    corrupted_log_prob: float = field(default=float("nan"))

    @property
    def subject_positions(self):
        return list(range(*self.subject_range))


def _prepare(model, tokenizer, prompt, subject, noise, samples, seed):
    validate.count(samples, "samples")
    subject_range = subject_token_range(tokenizer, prompt, subject)
    ids = torch.tensor([tokenizer(prompt, add_special_tokens=False)["input_ids"]])
    modules = model_modules(model)
    validate.token_ids(ids, modules["embed"].num_embeddings, "the prompt's token ids")
    validate.context_length(ids.shape[1], model)
    if noise is None:
        noise = embedding_noise_scale(model, tokenizer)
    if (isinstance(noise, bool) or not isinstance(noise, numbers.Real) or not noise >= 0
            or not math.isfinite(noise)):
        raise ValueError(f"noise must be a standard deviation, a number >= 0 (or None for 3 x the embedding "
                         f"standard deviation), got {noise!r}.")
    generator = torch.Generator().manual_seed(seed)
    start, end = subject_range
    draws = torch.randn((samples, end - start, model.config.hidden_size), generator=generator)
    with torch.inference_mode():
        clean_embeds = modules["embed"](ids)
    corrupt = clean_embeds.repeat(samples, 1, 1)
    corrupt[:, start:end] += noise * draws
    return ids, subject_range, modules, float(noise), corrupt


def _clean_run(model, modules, ids, tokenizer, answer):
    """Clean run: the answer and every layer's, MLP's and attention's output at every token."""
    states = {kind: [None] * len(modules["layers"]) for kind in KINDS}

    def keep(kind, index):
        def hook(module, args, output):
            states[kind][index] = _hidden(output)[0].clone()
        return hook

    pairs = [(modules[kind][i], keep(kind, i)) for kind in KINDS for i in range(len(modules["layers"]))]
    with _hooks(pairs):
        log_probs = model(input_ids=ids, logits_to_keep=1).logits[0, -1].log_softmax(-1)
    probs = log_probs.exp()
    if answer is None:
        answer_id = int(probs.argmax())
    else:
        answer_id = answer_token_id(tokenizer, answer)
        _warn_unlikely_answer(tokenizer, answer, answer_id, float(probs[answer_id]))
    return (answer_id, float(probs[answer_id]), {k: torch.stack(v) for k, v in states.items()},
            float(log_probs[answer_id]))


def _restore_hooks(modules, kind, clean, rows_for_layer, offset):
    """Hooks that copy the clean state of (layer, token) into the rows that restore it.

    ``rows_for_layer[layer]`` is a list of (row indices, token position) pairs; the
    token position is counted in the full prompt, ``offset`` is the first position
    this forward pass computes.
    """
    def hook_for(layer):
        def hook(module, args, output):
            hidden = _hidden(output).clone()
            for rows, token in rows_for_layer[layer]:
                hidden[rows, token - offset] = clean[kind][layer, token]
            return _with_hidden(output, hidden)
        return hook

    return [(modules[kind][layer], hook_for(layer)) for layer in rows_for_layer]


def _answer_probs(logits, answer_id):
    return logits[:, -1].softmax(-1)[:, answer_id]


def _answer_log_probs(logits, answer_id):
    """log p(answer) of each row; exp() of it is ``_answer_probs``."""
    return logits[:, -1].log_softmax(-1)[:, answer_id]


def _straightforward(model, modules, kind, window, clean, corrupt, answer_id, positions, chosen_layers):
    """One forward pass per (layer, token, noise sample), as in the paper's code."""
    n_layers, n_tokens = len(modules["layers"]), corrupt.shape[1]
    corrupted = torch.stack([_answer_log_probs(model(inputs_embeds=corrupt[s:s + 1]).logits, answer_id)[0]
                             for s in range(len(corrupt))])
    scores = torch.full((n_layers, n_tokens), float("nan"))
    log_scores = scores.clone()
    for layer in chosen_layers:
        for token in positions:
            restore = {m: [([0], token)] for m in _patched_layers(layer, kind, window, n_layers)}
            log_probs = []
            with _hooks(_restore_hooks(modules, kind, clean, restore, 0)):
                for s in range(len(corrupt)):
                    log_probs.append(_answer_log_probs(model(inputs_embeds=corrupt[s:s + 1]).logits, answer_id)[0])
            scores[layer, token] = torch.stack(log_probs).exp().mean()
            log_scores[layer, token] = torch.stack(log_probs).mean()
    return (scores, corrupted.exp().mean()), (log_scores, corrupted.mean())


def _cache_tensors(cache):
    """[(keys, values) per layer] from a transformers cache object (4.x or 5.x)."""
    if hasattr(cache, "layers"):
        return [(layer.keys, layer.values) for layer in cache.layers]
    return [(k, v) for k, v in cache.to_legacy_cache()]


def _first_computed_layer(layer, kind, window, n_layers):
    """The lowest layer a restoration at ``layer`` changes: below it, the restored run is the corrupted run.

    Restoring a layer's output ("hidden") changes nothing until the next layer
    reads it; restoring an MLP or attention output changes its own layer, and the
    lowest one in its window.
    """
    if kind == "hidden":
        return layer + 1
    return min(_window(layer, window, n_layers))


def _corrupted_run(model, modules, corrupt, answer_id):
    """The corrupted run of all noise samples: every layer's output, the keys and values, and mean p(answer)."""
    layer_outputs = [None] * len(modules["layers"])

    def keep(index):
        def hook(module, args, output):
            layer_outputs[index] = output
        return hook

    with _hooks([(layer, keep(i)) for i, layer in enumerate(modules["layers"])]):
        out = model(inputs_embeds=corrupt, use_cache=True, logits_to_keep=1)
    log_probs = _answer_log_probs(out.logits, answer_id)
    return layer_outputs, _cache_tensors(out.past_key_values), log_probs.exp().mean(), log_probs.mean()


def _fast(model, modules, jobs, clean, corrupt, answer_id, first_token, layers_per_pass, corrupted_run):
    """Batched restorations that skip the work a restoration cannot change.

    1. One corrupted run of all noise samples (``corrupted_run``, from
       ``_corrupted_run``) keeps every layer's output and the keys and values of
       every position; nothing here modifies it.
    2. Restoring a state at token ``t`` cannot change positions before ``t``
       (causal attention): each pass starts at ``t``, with the corrupted run's
       keys and values of the earlier positions as its cache.
    3. Below the first layer a restoration changes, its run *is* the corrupted
       run: those rows are replayed from step 1, not computed (see ``_staircase``).
    4. Tokens before the subject are the same in the clean and corrupted runs,
       so restoring them changes nothing: their restored probability is the
       corrupted one, with no forward pass.

    ``jobs`` is a list of (name, kind, window, positions, layers). Every restoration
    of one token, of all jobs (every kind, window and layer, and every noise sample),
    shares one forward pass (``layers_per_pass`` restorations at a time). Returns
    ``{name: (p restored, log p restored)}``, each (layers, tokens) with NaN where not traced.
    """
    from transformers import DynamicCache

    n_layers, (samples, n_tokens) = len(modules["layers"]), corrupt.shape[:2]
    layer_outputs, kv, corrupted, corrupted_log = corrupted_run
    out = {}
    by_token = {}  # token -> [(first computed layer, name, kind, window, layer)]
    for name, kind, window, positions, chosen_layers in jobs:
        restored = torch.full((n_layers, n_tokens), float("nan"))
        restored_log = restored.clone()
        before = [t for t in positions if t < first_token]
        restored[np.ix_(chosen_layers, before)] = float(corrupted)
        restored_log[np.ix_(chosen_layers, before)] = float(corrupted_log)
        out[name] = (restored, restored_log)
        for token in [t for t in positions if t >= first_token]:
            by_token.setdefault(token, []).extend(
                (_first_computed_layer(layer, kind, window, n_layers), name, kind, window, layer)
                for layer in chosen_layers)
    for token, groups in by_token.items():
        # Rows are grouped by restoration and sorted by the first layer each changes,
        # so the rows layer i must compute are the first active[i].
        groups.sort(key=lambda group: group[0])
        position_ids = torch.arange(token, n_tokens).unsqueeze(0)
        per_pass = layers_per_pass or max(1, _ROWS_PER_PASS // samples)
        for first in range(0, len(groups), per_pass):
            chunk = groups[first:first + per_pass]
            repeats = len(chunk)
            restore = {kind: {} for kind in KINDS}
            for i, (_, _, kind, window, layer) in enumerate(chunk):
                for m in _patched_layers(layer, kind, window, n_layers):
                    restore[kind].setdefault(m, []).append((slice(i * samples, (i + 1) * samples), token))
            active = [samples * sum(start <= i for start, *_ in chunk) for i in range(n_layers)]

            def fills(index, rows, token=token):
                return _hidden(layer_outputs[index])[:, token:].repeat(rows // samples, 1, 1)

            past = None
            if token > 0:
                # Each layer's cache holds the rows that layer computes. A layer that computes no row
                # still gets one group of rows (never read): the model takes the number of cached
                # positions from the first layer's cache, and an empty cache would count as zero.
                past = DynamicCache(ddp_cache_data=[
                    (k[:, :, :token].repeat(max(n // samples, 1), 1, 1, 1),
                     v[:, :, :token].repeat(max(n // samples, 1), 1, 1, 1))
                    for (k, v), n in zip(kv, active)])
            hooks = [pair for kind in KINDS if restore[kind]
                     for pair in _restore_hooks(modules, kind, clean, restore[kind], token)]
            with _staircase(modules["layers"], active, layer_outputs, fills), _hooks(hooks):
                logits = model(inputs_embeds=corrupt[:, token:].repeat(repeats, 1, 1), past_key_values=past,
                               position_ids=position_ids, use_cache=past is not None, logits_to_keep=1).logits
            log_probs = _answer_log_probs(logits, answer_id).view(repeats, samples)
            for (_, name, _, _, layer), row in zip(chunk, log_probs):
                out[name][0][layer, token] = row.exp().mean()
                out[name][1][layer, token] = row.mean()
    return out


def _positions(chosen, n, name, what):
    """Sorted, distinct indices in ``range(n)`` from a list that may count from the end (None: all)."""
    if chosen is None:
        return list(range(n))
    if isinstance(chosen, int) or not chosen or not all(isinstance(i, int) and -n <= i < n for i in chosen):
        raise ValueError(f"{name} must be a non-empty list of indices between {-n} and {n - 1} "
                         f"({what.format(n=n)}), got {chosen!r}.")
    return sorted({i % n for i in chosen})


def causal_trace(model, tokenizer, prompt, subject, answer=None, kind="hidden", noise=None, samples=10,
                 window=10, seed=0, method="fast", layers_per_pass=None, tokens=None, layers=None):
    """Causal tracing of one factual prompt.

    Parameters
    ----------
    model, tokenizer : a causal LM in eval mode (a type listed in ``ARCHITECTURES``) and its tokenizer.
    prompt : the text before the answer, e.g. "The Eiffel Tower is located in the city of".
    subject : the part of the prompt to corrupt, e.g. "The Eiffel Tower".
    answer : the answer with its leading space (" Paris"); its first token is traced.
        ``None`` uses the model's top prediction on the clean prompt.
    kind : "hidden" restores one layer's output (the residual stream); "mlp" and
        "attn" restore the MLP or attention outputs of ``window`` consecutive layers
        centred on each layer.
    noise : standard deviation of the Gaussian noise added to the subject's
        embeddings; ``None`` means 3 x the standard deviation of subject embeddings.
    samples : noise draws to average over; they are the same for every restoration.
    seed : seed of the noise draws.
    method : "fast" (batched, with reuse) or "straightforward" (one pass per restored run).
    layers_per_pass : (fast) how many layers' restorations share one forward pass;
        ``None`` means as many as fit in 300 rows (restorations x samples). Fewer use less memory.
    tokens : token positions to restore (negative ones count from the end, -1 is the
        last token); ``None`` means all. The other columns of ``scores`` are NaN.
    layers : layers to restore (for "mlp" and "attn", the centres of the windows);
        ``None`` means all. The other rows of ``scores`` are NaN.

    Returns a ``TraceResult``: ``scores`` (layers x tokens) holds the indirect
    effects p(answer | restored) - p(answer | corrupted).
    """
    _check_kind(kind)
    if method not in ("fast", "straightforward"):
        raise ValueError(f"method must be 'fast' or 'straightforward', got {method!r}.")
    validate.count(window, "window (a number of layers)")
    if method == "fast":   # one trace is a batch of one request
        request = {"kind": kind, "window": window, "tokens": tokens, "layers": layers}
        return causal_traces(model, tokenizer, prompt, subject, {"trace": request}, answer=answer, noise=noise,
                             samples=samples, seed=seed, layers_per_pass=layers_per_pass)["trace"]
    if layers_per_pass is not None:
        validate.count(layers_per_pass, "layers_per_pass (or None: all layers)")
    with torch.inference_mode():
        ids, subject_range, modules, noise, corrupt = _prepare(model, tokenizer, prompt, subject, noise,
                                                               samples, seed)
        if kind != "hidden" and window > len(modules["layers"]):
            raise ValueError(f"window={window} is wider than the model's {len(modules['layers'])} layers: every "
                             "window would cover all layers, so every row of scores would be the same. Use a "
                             f"window from 1 to {len(modules['layers'])} (the paper uses 10).")
        answer_id, clean_prob, clean, clean_log = _clean_run(model, modules, ids, tokenizer, answer)
        positions = _positions(tokens, ids.shape[1], "tokens", "the prompt has {n} tokens")
        chosen_layers = _positions(layers, len(modules["layers"]), "layers", "the model has {n} layers")
        (restored, corrupted), (restored_log, corrupted_log) = _straightforward(
            model, modules, kind, window, clean, corrupt, answer_id, positions, chosen_layers)
    tokens = [tokenizer.decode([i]) for i in ids[0].tolist()]
    return TraceResult(scores=(restored - corrupted).numpy().astype(np.float64), clean_prob=clean_prob,
                       corrupted_prob=float(corrupted), answer=tokenizer.decode([answer_id]),
                       answer_id=answer_id, tokens=tokens, subject_range=subject_range, kind=kind,
                       window=window, noise=noise, samples=samples, method=method,
                       log_scores=(restored_log - corrupted_log).numpy().astype(np.float64),
                       clean_log_prob=clean_log, corrupted_log_prob=float(corrupted_log))


def causal_traces(model, tokenizer, prompt, subject, requests, answer=None, noise=None, samples=10, seed=0,
                  layers_per_pass=None):
    """Several fast causal traces of one prompt that share one clean run, one noise draw and one corrupted run.

    ``requests`` maps a name to the keyword arguments of one trace: ``kind``, and
    optionally ``window`` (default 10), ``tokens`` and ``layers`` (default: all), as
    in ``causal_trace``. Returns ``{name: TraceResult}``; each result is the one
    ``causal_trace(model, tokenizer, prompt, subject, answer=answer, noise=noise,
    samples=samples, seed=seed, **request)`` gives, with the clean and corrupted
    runs computed once instead of once per trace, and the restorations of all
    requests at one token in shared forward passes (``layers_per_pass`` at a time; by default
    as many as fit in 300 rows).
    Each result also carries ``log_scores``, the same restorations scored in
    log-probability, at no extra cost.
    """
    if not isinstance(requests, dict) or not requests:
        raise ValueError("requests must be a non-empty dict {name: dict(kind=..., window=..., tokens=..., "
                         "layers=...)}.")
    for name, request in requests.items():
        if not isinstance(request, dict) or not set(request) <= {"kind", "window", "tokens", "layers"}:
            raise ValueError(f"request {name!r} must be a dict with keys among kind, window, tokens and layers, "
                             f"got {request!r}.")
        _check_kind(request.get("kind", "hidden"))
        validate.count(request.get("window", 10), "window (a number of layers)")
    if layers_per_pass is not None:
        validate.count(layers_per_pass, "layers_per_pass (or None: all layers)")
    results = {}
    with torch.inference_mode():
        ids, subject_range, modules, noise, corrupt = _prepare(model, tokenizer, prompt, subject, noise,
                                                               samples, seed)
        n_layers = len(modules["layers"])
        answer_id, clean_prob, clean, clean_log = _clean_run(model, modules, ids, tokenizer, answer)
        run = _corrupted_run(model, modules, corrupt, answer_id)
        corrupted, corrupted_log = run[2], run[3]
        tokens = [tokenizer.decode([i]) for i in ids[0].tolist()]
        jobs = []
        for name, request in requests.items():
            kind, window = request.get("kind", "hidden"), request.get("window", 10)
            if kind != "hidden" and window > n_layers:
                which = f"request {name!r}: " if len(requests) > 1 else ""
                raise ValueError(f"{which}window={window} is wider than the model's {n_layers} layers: every "
                                 "window would cover all layers, so every row of scores would be the same. Use a "
                                 f"window from 1 to {n_layers} (the paper uses 10).")
            positions = _positions(request.get("tokens"), ids.shape[1], "tokens", "the prompt has {n} tokens")
            chosen_layers = _positions(request.get("layers"), n_layers, "layers", "the model has {n} layers")
            jobs.append((name, kind, window, positions, chosen_layers))
        restored = _fast(model, modules, jobs, clean, corrupt, answer_id, subject_range[0], layers_per_pass, run)
        for name, kind, window, _, _ in jobs:
            p, log_p = restored[name]
            results[name] = TraceResult(scores=(p - corrupted).numpy().astype(np.float64),
                                        clean_prob=clean_prob, corrupted_prob=float(corrupted),
                                        answer=tokenizer.decode([answer_id]), answer_id=answer_id, tokens=tokens,
                                        subject_range=subject_range, kind=kind, window=window, noise=noise,
                                        samples=samples, log_scores=(log_p - corrupted_log).numpy().astype(np.float64),
                                        clean_log_prob=clean_log, corrupted_log_prob=float(corrupted_log))
    return results


def restored_probability(model, tokenizer, prompt, subject, states, kind="hidden", answer=None, noise=None,
                         samples=10, seed=0):
    """Mean p(answer) over noise samples when all ``states`` [(layer, token), ...] are restored at once.

    ``kind`` says which output is restored at each (layer, token): the layer's
    ("hidden"), its MLP's ("mlp") or its attention's ("attn"). No window is applied.
    With ``states=[]`` this is the corrupted probability.
    """
    _check_kind(kind)
    with torch.inference_mode():
        ids, _, modules, _, corrupt = _prepare(model, tokenizer, prompt, subject, noise, samples, seed)
        answer_id, _, clean, _ = _clean_run(model, modules, ids, tokenizer, answer)
        n_layers, n_tokens = len(modules["layers"]), ids.shape[1]
        restore = {}
        for layer, token in states:
            if not (validate.is_int(layer) and validate.is_int(token) and 0 <= layer < n_layers
                    and 0 <= token < n_tokens):
                raise ValueError(f"state {(layer, token)} is outside {n_layers} layers x {n_tokens} tokens: give "
                                 "each state as (layer, token), two ints counted from 0.")
            restore.setdefault(layer, []).append((slice(None), token))
        with _hooks(_restore_hooks(modules, kind, clean, restore, 0)):
            probs = _answer_probs(model(inputs_embeds=corrupt).logits, answer_id)
    return float(probs.mean())


def token_categories(n_tokens, subject_range):
    """Category (an index into ``CATEGORIES``) of each token, as in the paper's Figure 2.

    A one-token subject is its own first and last token: it counts as "last subject token".
    """
    validate.count(n_tokens, "n_tokens")
    start, end = subject_range
    if not 0 <= start < end <= n_tokens:
        raise ValueError(f"subject_range must be (start, end) with 0 <= start < end <= {n_tokens}, "
                         f"got {subject_range!r}.")
    categories = []
    for position in range(n_tokens):
        if position == n_tokens - 1:
            categories.append(5)
        elif position == end - 1:
            categories.append(2)
        elif position == start:
            categories.append(0)
        elif start < position < end - 1:
            categories.append(1)
        elif position == end:
            categories.append(3)
        elif position > end:
            categories.append(4)
        else:
            categories.append(None)  # before the subject: restoring it changes nothing
    return categories


def average_by_category(results, metric="probability"):
    """Mean indirect effect per (token category, layer) over many ``TraceResult``s.

    ``metric`` is "probability" (``scores``) or "log-probability" (``log_scores``, in nats).
    Token positions that were not traced (NaN columns, see ``causal_trace(tokens=...)``) are left out.
    Returns an array of shape (len(CATEGORIES), layers); a category no prompt has is NaN.
    """
    if not results or not all(isinstance(r, TraceResult) for r in results):
        raise ValueError("results must be a non-empty list of TraceResult from causal_trace.")
    if metric not in ("probability", "log-probability"):
        raise ValueError(f"metric must be 'probability' or 'log-probability', got {metric!r}.")
    if metric == "log-probability" and any(r.log_scores is None for r in results):
        raise ValueError("metric='log-probability' needs results with log_scores (from causal_trace or causal_traces).")
    n_layers = results[0].scores.shape[0]
    sums, counts = np.zeros((len(CATEGORIES), n_layers)), np.zeros(len(CATEGORIES))
    for result in results:
        scores = result.scores if metric == "probability" else result.log_scores
        per_category = {}
        for position, category in enumerate(token_categories(len(result.tokens), result.subject_range)):
            if category is not None and not np.isnan(scores[:, position]).all():
                per_category.setdefault(category, []).append(scores[:, position])
        for category, columns in per_category.items():
            sums[category] += np.mean(columns, axis=0)
            counts[category] += 1
    with np.errstate(invalid="ignore"):
        return sums / counts[:, None]
