"""Activation patching, attribution patching and the logit lens.

Activation patching (as in Zhang & Nanda 2024, "Towards Best Practices of
Activation Patching") runs a model on two prompts of the same length that differ
in one entity:

* the *clean* prompt, "The mother tongue of Vladimir Putin is" -> " Russian";
* the *corrupted* prompt, "The mother tongue of Victor Hugo is" -> " French".

The *logit difference* logit(clean answer) - logit(corrupted answer) at the last
position measures which answer the model prefers. Each *patched run* is the
corrupted run with one activation copied from the clean run; its *normalised
recovery* (patched - corrupted) / (clean - corrupted) is 0 when the patch changes
nothing and 1 when it brings the clean logit difference back.

*Attribution patching* (Nanda 2023; Syed et al. 2023) estimates every patch at
once from one forward and one backward pass on the corrupted prompt:
gradient x (clean activation - corrupted activation), the first-order Taylor
approximation of the patch.

The *logit lens* (nostalgebraist 2020) reads a layer's hidden state at the last
token through the model's final norm and unembedding, as if it were the last layer.

The module names come from ``xai_lesson.transformer.ARCHITECTURES``; the patched runs
are batched, many per forward pass.
"""

from dataclasses import dataclass

import numpy as np
import torch

from xai_lesson import tracing, transformer, validate
from xai_lesson.transformer import layer_output as _hidden, with_layer_output as _with_hidden

KINDS = ("hidden", "attn", "mlp", "head")


@dataclass
class PromptPair:
    """A clean and a corrupted prompt of the same length, and the two answers the metric compares."""

    clean_ids: torch.Tensor
    corrupted_ids: torch.Tensor
    clean_answer_id: int
    corrupted_answer_id: int
    clean_tokens: list = None
    corrupted_tokens: list = None
    subject_range: tuple = None

    def __post_init__(self):
        for name in ("clean_ids", "corrupted_ids"):
            ids = getattr(self, name)
            if not torch.is_tensor(ids) or ids.ndim != 2 or ids.shape[0] != 1 or ids.dtype != torch.long:
                raise ValueError(f"{name} must be a (1, tokens) tensor of token ids, as tokenizer(prompt, "
                                 f"return_tensors='pt').input_ids gives, got {_describe(ids)}.")
        if self.clean_ids.shape != self.corrupted_ids.shape:
            raise ValueError(f"The clean prompt has {self.clean_ids.shape[1]} tokens and the corrupted prompt "
                             f"{self.corrupted_ids.shape[1]}: activation patching copies activations position by "
                             "position, so both prompts need the same number of tokens. Pick a replacement "
                             "subject with as many tokens as the original.")
        if self.clean_answer_id == self.corrupted_answer_id:
            raise ValueError(f"Both answers are token {self.clean_answer_id}: the logit difference would be 0 in "
                             "every run. Pick a corrupted prompt whose answer starts with a different token.")

    @property
    def n_tokens(self):
        return self.clean_ids.shape[1]

    def shared_prefix(self):
        """How many leading tokens the two prompts share: activations there are the same in both runs."""
        differ = (self.clean_ids[0] != self.corrupted_ids[0]).nonzero()
        return int(differ[0]) if len(differ) else self.n_tokens


def _describe(value):
    if torch.is_tensor(value):
        return f"a tensor of shape {tuple(value.shape)} and dtype {value.dtype}"
    return f"{type(value).__name__}"


def make_pair(tokenizer, prompt, subject, replacement, answer, corrupted_answer):
    """The ``PromptPair`` for ``prompt`` and the same prompt with ``subject`` replaced by ``replacement``.

    ``answer`` and ``corrupted_answer`` are written with their leading space
    (" Russian", " French"); their first tokens are compared.
    """
    if not isinstance(prompt, str) or subject not in prompt:
        raise ValueError(f"The subject {subject!r} does not occur in the prompt {prompt!r}. Give the subject "
                         "exactly as it is written in the prompt (case and spaces count).")
    corrupted = prompt.replace(subject, replacement, 1)
    clean_ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    corrupted_ids = tokenizer(corrupted, return_tensors="pt", add_special_tokens=False).input_ids
    if clean_ids.shape != corrupted_ids.shape:
        raise ValueError(f"{subject!r} and {replacement!r} give prompts of {clean_ids.shape[1]} and "
                         f"{corrupted_ids.shape[1]} tokens; activation patching needs the same number of tokens. Pick a "
                         "replacement with as many tokens as the subject (tokenizer.tokenize(' ' + name) "
                         "shows them).")
    return PromptPair(clean_ids, corrupted_ids, tracing.answer_token_id(tokenizer, answer),
                      tracing.answer_token_id(tokenizer, corrupted_answer),
                      [tokenizer.decode([i]) for i in clean_ids[0].tolist()],
                      [tokenizer.decode([i]) for i in corrupted_ids[0].tolist()],
                      tracing.subject_token_range(tokenizer, prompt, subject))


def _partners(tokenizer, fact, other):
    """Whether ``other`` can corrupt ``fact``: the same prompt with the subject swapped, a subject of as
    many tokens, and an answer that starts with a different token (the rule of ``fact_pairs``)."""
    return (other["prompt"] == fact["prompt"].replace(fact["subject"], other["subject"], 1)
            and len(tokenizer.tokenize(" " + other["subject"])) == len(tokenizer.tokenize(" " + fact["subject"]))
            and tracing.answer_token_id(tokenizer, other["answer"]) != tracing.answer_token_id(tokenizer, fact["answer"]))


def fact_pairs(tokenizer, facts=None):
    """Clean/corrupted pairs from the fact set: each fact against another fact of the same template.

    For each fact, the partner is the first other fact whose prompt is this prompt
    with the subject swapped, whose subject has as many tokens, and whose answer
    starts with a different token. Facts with no partner are left out.
    Returns a list of (fact, partner, PromptPair).
    """
    facts = tracing.load_known_facts() if facts is None else facts
    pairs = []
    for fact in facts:
        for other in facts:
            if other is fact or not _partners(tokenizer, fact, other):
                continue
            pairs.append((fact, other, make_pair(tokenizer, fact["prompt"], fact["subject"], other["subject"],
                                                 fact["answer"], other["answer"])))
            break
    validate.not_empty(len(pairs), "the list of fact pairs",
                       "no fact has a partner with the same template, subject length and a different answer.")
    return pairs


def symmetric_pairs(tokenizer, facts=None):
    """Every pair of facts that ``fact_pairs`` could match, in both orders.

    Two facts pair when one prompt is the other with the subject swapped, the
    subjects have as many tokens and the answers start with different tokens.
    Each unordered pair appears twice, (a, b) then (b, a), so that denoising one
    order is noising the other. Returns a list of (fact, partner, PromptPair).
    """
    facts = tracing.load_known_facts() if facts is None else facts
    pairs = []
    for i, fact in enumerate(facts):
        for other in facts[i + 1:]:
            if not _partners(tokenizer, fact, other):
                continue
            for a, b in ((fact, other), (other, fact)):
                pairs.append((a, b, make_pair(tokenizer, a["prompt"], a["subject"], b["subject"], a["answer"],
                                              b["answer"])))
    validate.not_empty(len(pairs), "the list of symmetric fact pairs",
                       "no two facts share a template, a subject length and differ in their answer.")
    return pairs


def logit_difference(logits, pair):
    """logit(clean answer) - logit(corrupted answer), for logits of shape (..., vocabulary) at the last position."""
    _check_pair(pair)
    if not torch.is_tensor(logits) or logits.ndim < 1:
        raise TypeError(f"logits must be a tensor of shape (..., vocabulary), got {_describe(logits)}.")
    validate.token_ids([pair.clean_answer_id, pair.corrupted_answer_id], logits.shape[-1], "the answers' token ids")
    return logits[..., pair.clean_answer_id] - logits[..., pair.corrupted_answer_id]


def _is_hugging_face(model):
    return hasattr(model, "config") and hasattr(model, "get_output_embeddings")


def _last_logits(model, ids, past=None, offset=0):
    """Logits at the last position, (rows, vocabulary); Hugging Face models compute only that position.

    With ``past`` (keys and values of the first ``offset`` positions), ``ids`` are the positions after them.
    """
    if _is_hugging_face(model):
        extra = {}
        if past is not None:
            extra = dict(past_key_values=past, use_cache=True,
                         position_ids=torch.arange(offset, offset + ids.shape[1]).unsqueeze(0))
        return model(input_ids=ids, logits_to_keep=1, **extra).logits[:, -1]
    output = model(ids)
    return getattr(output, "logits", output)[:, -1]


def _corrupted_run(model, pair):
    """The corrupted logit difference, and (Hugging Face models) the keys and values of every position."""
    with torch.inference_mode():
        if not _is_hugging_face(model):
            return float(logit_difference(_last_logits(model, pair.corrupted_ids)[0], pair)), None
        output = model(input_ids=pair.corrupted_ids, use_cache=True, logits_to_keep=1)
    return float(logit_difference(output.logits[0, -1], pair)), tracing._cache_tensors(output.past_key_values)


def _repeat_cache(past, offset, rows):
    """A cache holding the first ``offset`` positions of ``past``, once per row (None if there is nothing)."""
    if past is None or offset == 0:
        return None
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=[(k[:, :, :offset].repeat(rows, 1, 1, 1), v[:, :, :offset].repeat(rows, 1, 1, 1))
                                        for k, v in past])


@dataclass
class _Site:
    """One place activations are patched: a module's output, or (pre=True) its input, split into ``groups``."""

    module: torch.nn.Module
    pre: bool = False
    groups: int = 1


def sites(model, kind):
    """The patched sites of ``kind``, one per layer: layer outputs, attention outputs, MLP outputs or heads."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}.")
    modules = transformer.model_modules(model)
    if kind != "head":
        return [_Site(module) for module in modules[kind]]
    heads = model.config.num_attention_heads
    return [_Site(projection, pre=True, groups=heads) for projection in modules["head_projection"]]


def _register(site, hook):
    """Register ``hook(tensor) -> tensor or None`` on the site's output (or input); return the handle."""
    if site.pre:
        def pre_hook(module, args):
            new = hook(args[0])
            return None if new is None else (new,) + tuple(args[1:])
        return site.module.register_forward_pre_hook(pre_hook)

    def post_hook(module, args, output):
        new = hook(_hidden(output))
        return None if new is None else _with_hidden(output, new)
    return site.module.register_forward_hook(post_hook)


def _check_ids(model, ids, name="the prompt's token ids"):
    """Token ids (1, tokens) that the model's vocabulary and context can take."""
    if not torch.is_tensor(ids) or ids.ndim != 2 or ids.shape[0] != 1:
        raise ValueError(f"{name} must be a (1, tokens) tensor, as tokenizer(prompt, return_tensors='pt')"
                         f".input_ids gives, got {_describe(ids)}.")
    if _is_hugging_face(model):
        validate.token_ids(ids, model.get_input_embeddings().num_embeddings, name)
    validate.context_length(ids.shape[1], model)


def _check_sites(model, site_list):
    """The sites of ``kind``, or the given modules, each of which must belong to ``model``."""
    if isinstance(site_list, torch.nn.Module) or not list(site_list):
        raise TypeError("site_list must be a non-empty list of sub-modules of the model.")
    return [_Site(validate.module_of(m, model, "every module of site_list")) for m in site_list]


def run_with_cache(model, ids, site_list):
    """Last-position logits of one run, and each site's activation (tokens, features), detached."""
    _check_ids(model, ids)
    if not all(isinstance(site, _Site) for site in site_list) or not site_list:
        raise TypeError("site_list must be a non-empty list of sites, from patching.sites(model, kind).")
    for site in site_list:
        validate.module_of(site.module, model, "every site's module")
    cache = [None] * len(site_list)

    def keep(index):
        def hook(tensor):
            cache[index] = tensor[0].detach().clone()
        return hook

    handles = [_register(site, keep(i)) for i, site in enumerate(site_list)]
    try:
        with torch.inference_mode():
            logits = _last_logits(model, ids)
    finally:
        for handle in handles:
            handle.remove()
    return logits[0], cache


@dataclass
class PatchResult:
    """Logit differences of patched runs. ``patched[layer, column]`` (column: a token position, or a head).

    Entries not computed are NaN. ``runs`` counts the patched forward runs (batch rows)
    and ``backward`` the backward passes it took.
    """

    patched: np.ndarray
    clean: float
    corrupted: float
    kind: str
    columns: list
    runs: int
    backward: int = 0

    @property
    def recovery(self):
        """Normalised recovery (patched - corrupted) / (clean - corrupted): 0 nothing, 1 the clean run."""
        return normalised_recovery(self.patched, self.clean, self.corrupted)


def normalised_recovery(patched, clean, corrupted):
    """(patched - corrupted) / (clean - corrupted); raises if the clean and corrupted runs tie."""
    if abs(clean - corrupted) < 1e-6:
        raise ValueError(f"The clean and corrupted logit differences are equal ({clean:.4g}), so there is "
                         "nothing to recover: pick a corrupted prompt that changes the model's answer.")
    return (np.asarray(patched) - corrupted) / (clean - corrupted)


def _columns(kind, pair, site_list, positions, position):
    n = pair.n_tokens
    if kind == "head":
        if not isinstance(position, int) or not -n <= position < n:
            raise ValueError(f"position must be one token index between {-n} and {n - 1}, got {position!r}.")
        return [f"head {h}" for h in range(site_list[0].groups)], position % n
    return list(pair.clean_tokens or range(n)), None


def _rows(kind, pair, site_list, positions, position, skip_shared_prefix):
    """(layer, position, group) of every patched run."""
    n = pair.n_tokens
    if kind == "head":
        return [(layer, position % n, g) for layer in range(len(site_list)) for g in range(site_list[0].groups)]
    chosen = tracing._positions(positions, n, "positions", "the prompts have {n} tokens")
    if skip_shared_prefix:
        chosen = [p for p in chosen if p >= pair.shared_prefix()]
    return [(layer, p, 0) for layer in range(len(site_list)) for p in chosen]


def _grouped(tensor, groups):
    return tensor.view(*tensor.shape[:-1], groups, tensor.shape[-1] // groups)


def _check_pair(pair):
    if not isinstance(pair, PromptPair):
        raise TypeError(f"pair must be a PromptPair (from make_pair or fact_pairs), got {type(pair).__name__}.")


def _check_model_and_pair(model, pair):
    _check_pair(pair)
    _check_ids(model, pair.clean_ids, "the clean prompt's token ids")
    _check_ids(model, pair.corrupted_ids, "the corrupted prompt's token ids")
    if model.training:
        raise ValueError("The model is in training mode (dropout is on), so patched runs would be random. "
                         "Call model.eval() first.")


def activation_patching(model, pair, kind="hidden", positions=None, position=-1, batch_size=64,
                        skip_shared_prefix=True, site_list=None):
    """Patch one clean activation at a time into the corrupted run; many patched runs share a forward pass.

    kind : "hidden" (a layer's output: the residual stream), "attn" or "mlp" (that
        part's output), each at one (layer, token position); or "head": one attention
        head's output at one ``position`` (default the last token), copied into the
        input of the attention's output projection.
    positions : token positions to patch ("hidden", "attn", "mlp"); ``None`` means all.
    skip_shared_prefix : positions before the first token where the prompts differ
        hold the same activations in both runs, so patching them changes nothing;
        they get the corrupted logit difference without a forward pass.
    site_list : patch the outputs of these modules instead of ``kind``'s (any model
        whose call returns logits, for tests).

    Returns a ``PatchResult`` with ``patched`` of shape (layers, tokens) or (layers, heads).
    """
    _check_model_and_pair(model, pair)
    validate.count(batch_size, "batch_size (patched runs per forward pass)")
    site_list = sites(model, kind) if site_list is None else _check_sites(model, site_list)
    columns, _ = _columns(kind, pair, site_list, positions, position)
    rows = _rows(kind, pair, site_list, positions, position, skip_shared_prefix)
    clean_logits, clean_cache = run_with_cache(model, pair.clean_ids, site_list)
    clean = float(logit_difference(clean_logits, pair))
    corrupted, past = _corrupted_run(model, pair)
    patched = np.full((len(site_list), len(columns)), np.nan)
    if kind != "head" and skip_shared_prefix:
        patched[:, :pair.shared_prefix()] = corrupted
    # Runs that patch position p cannot change earlier positions (causal attention): sorted by position,
    # each batch starts at its first patched position, with the corrupted run's keys and values before it.
    rows.sort(key=lambda row: (row[1], row[0], row[2]))
    for start in range(0, len(rows), batch_size):
        chunk = rows[start:start + batch_size]
        offset = chunk[0][1] if past is not None else 0
        by_site = {}
        for row, (layer, pos, group) in enumerate(chunk):
            by_site.setdefault(layer, []).append((row, pos - offset, group))

        def patch(layer):
            rows_, positions_, groups_ = (torch.tensor(column) for column in zip(*by_site[layer]))
            groups = site_list[layer].groups

            def hook(tensor):
                tensor = tensor.clone()
                _grouped(tensor, groups)[rows_, positions_, groups_] = \
                    _grouped(clean_cache[layer], groups)[positions_ + offset, groups_]
                return tensor
            return hook

        handles = [_register(site_list[layer], patch(layer)) for layer in by_site]
        try:
            with torch.inference_mode():
                logits = _last_logits(model, pair.corrupted_ids[:, offset:].repeat(len(chunk), 1),
                                      past=_repeat_cache(past, offset, len(chunk)), offset=offset)
        finally:
            for handle in handles:
                handle.remove()
        for (layer, pos, group), value in zip(chunk, logit_difference(logits, pair).tolist()):
            patched[layer, group if kind == "head" else pos] = value
    return PatchResult(patched, clean, corrupted, kind, columns, runs=len(rows))


def attribution_patching(model, pair, kind="hidden", position=-1, site_list=None):
    """Estimate every patch of ``activation_patching`` from one forward and one backward pass.

    The estimated logit difference of a patch is the corrupted one plus
    gradient . (clean activation - corrupted activation), with the gradient of the
    logit difference taken on the corrupted run (the clean run is one more forward
    pass, to cache the clean activations). Exact when the logit difference is linear
    in the patched activation. Arguments as in ``activation_patching``; every
    position is estimated.
    """
    _check_model_and_pair(model, pair)
    site_list = sites(model, kind) if site_list is None else _check_sites(model, site_list)
    columns, head_position = _columns(kind, pair, site_list, None, position)
    clean_logits, clean_cache = run_with_cache(model, pair.clean_ids, site_list)
    corrupted_cache = [None] * len(site_list)

    def keep(index):
        def hook(tensor):
            corrupted_cache[index] = tensor
        return hook

    handles = [_register(site, keep(i)) for i, site in enumerate(site_list)]
    try:
        with torch.enable_grad():
            metric = logit_difference(_last_logits(model, pair.corrupted_ids)[0], pair)
            if not all(t.requires_grad for t in corrupted_cache):
                raise ValueError("The patched activations do not depend on any parameter that requires a "
                                 "gradient, so the backward pass cannot reach them. Do not freeze the model "
                                 "(requires_grad_(False)) before attribution patching.")
            gradients = torch.autograd.grad(metric, corrupted_cache)
    finally:
        for handle in handles:
            handle.remove()
    patched = np.empty((len(site_list), len(columns)))
    for layer, (site, gradient) in enumerate(zip(site_list, gradients)):
        change = gradient[0] * (clean_cache[layer] - corrupted_cache[layer][0].detach())
        per_group = _grouped(change, site.groups).sum(-1)  # (tokens, groups)
        patched[layer] = (per_group[head_position] if kind == "head" else per_group[:, 0]).numpy()
    corrupted = float(metric.detach())
    return PatchResult(patched + corrupted, float(logit_difference(clean_logits, pair)), corrupted, kind,
                       columns, runs=2, backward=1)


CORRUPTIONS = ("patching", "tracing")
METRICS = ("logit difference", "probability")


def corruption_by_metric(model, pair, layers, position, noise, samples=10, seed=0):
    """Restore one layer's clean output at ``position`` under two corruptions, scored with two metrics.

    The corruptions: ``"patching"`` runs the pair's corrupted prompt (another subject);
    ``"tracing"`` adds Gaussian noise of standard deviation ``noise`` to the clean prompt's
    subject tokens (``pair.subject_range``), ``samples`` draws seeded as ``tracing.causal_trace``
    seeds them. The metrics: the logit difference (clean answer minus the pair's corrupted
    answer; for noise this contrast is borrowed from the pair, since noise names no other
    answer) and the probability of the clean answer, each averaged over the noise draws.
    Every cell is a normalised recovery, (restored - corrupted) / (clean - corrupted), with
    the clean and corrupted runs of its own corruption and metric. All runs of one call
    share one forward pass.

    Returns ``{corruption: {metric: array with one recovery per entry of layers}}``.
    """
    _check_model_and_pair(model, pair)
    if pair.subject_range is None:
        raise ValueError("pair.subject_range is None: noise needs the subject's tokens. Build the pair with "
                         "make_pair, fact_pairs or symmetric_pairs, which set it.")
    modules = transformer.model_modules(model)
    decoder = modules["layers"]
    if isinstance(layers, (int, str)) or not list(layers):
        raise TypeError("layers must be a non-empty list of layer indices, e.g. [0, 9, 21].")
    layers = [validate.index(i, len(decoder), "each of layers", "layers") for i in layers]
    position = validate.index(position, pair.n_tokens, "position", "tokens in the prompts")
    validate.number(noise, "noise (a standard deviation)", minimum=0)
    validate.count(samples, "samples")
    start, end = pair.subject_range
    draws = torch.randn((samples, end - start, model.config.hidden_size), generator=torch.Generator().manual_seed(seed))
    _, clean_states = run_with_cache(model, pair.clean_ids, sites(model, "hidden"))
    embed = modules["embed"]
    n = len(layers)
    with torch.inference_mode():
        clean_embeds, corrupted_embeds = embed(pair.clean_ids), embed(pair.corrupted_ids)
        noisy = clean_embeds.repeat(samples, 1, 1)
        noisy[:, start:end] += noise * draws
        # rows: clean, corrupted, one patched run per layer, the noisy runs, then the noisy runs restored per layer
        batch = torch.cat([clean_embeds, corrupted_embeds, corrupted_embeds.repeat(n, 1, 1), noisy,
                           noisy.repeat(n, 1, 1)])
        restored = {}
        for k, layer in enumerate(layers):
            first = 2 + n + samples + k * samples
            restored.setdefault(layer, []).extend([2 + k, *range(first, first + samples)])

        def restore(layer):
            rows = torch.tensor(restored[layer])

            def hook(module, args, output):
                hidden = _hidden(output).clone()
                hidden[rows, position] = clean_states[layer][position]
                return _with_hidden(output, hidden)
            return hook

        with transformer.hooks([(decoder[layer], restore(layer)) for layer in restored]):
            logits = model(inputs_embeds=batch, logits_to_keep=1).logits[:, -1]
    values = {"logit difference": logit_difference(logits, pair).numpy().astype(np.float64),
              "probability": logits.softmax(-1)[:, pair.clean_answer_id].numpy().astype(np.float64)}
    table = {corruption: {} for corruption in CORRUPTIONS}
    for metric, v in values.items():
        clean, patched = v[0], v[2:2 + n]
        noisy_mean = v[2 + n:2 + n + samples].mean()
        restored_mean = v[2 + n + samples:].reshape(n, samples).mean(1)
        table["patching"][metric] = (patched - v[1]) / (clean - v[1])
        table["tracing"][metric] = (restored_mean - noisy_mean) / (clean - noisy_mean)
    return table


@dataclass
class LensResult:
    """The logit lens at the last token: per layer, the answer's probability and rank (0 = top), and the top token."""

    probs: np.ndarray
    ranks: np.ndarray
    top_tokens: list
    answer: str


def logit_lens(model, tokenizer, prompt, answer):
    """Read every layer's output at the last token of ``prompt`` through the final norm and the unembedding."""
    modules = transformer.model_modules(model)  # a ValueError naming the fix for an unknown model type
    if not isinstance(prompt, str):
        raise TypeError(f"prompt must be one string, got {type(prompt).__name__}.")
    answer_id = tracing.answer_token_id(tokenizer, answer)
    ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False).input_ids
    validate.token_ids(answer_id, model.get_output_embeddings().out_features, "the answer's token id")
    _, states = run_with_cache(model, ids, sites(model, "hidden"))
    norm, unembed = modules["final_norm"], modules["unembed"]
    with torch.inference_mode():
        logits = unembed(norm(torch.stack([state[-1] for state in states])))
    probs = logits.softmax(-1)
    ranks = (logits > logits[:, answer_id:answer_id + 1]).sum(-1)
    top = [tokenizer.decode([i]) for i in logits.argmax(-1).tolist()]
    return LensResult(probs[:, answer_id].numpy().astype(np.float64), ranks.numpy(), top,
                      tokenizer.decode([answer_id]))


def top_k_overlap(scores, reference, k):
    """Share of the ``k`` largest entries of ``reference`` that are also among the ``k`` largest of ``scores``."""
    scores, reference = np.asarray(scores).ravel(), np.asarray(reference).ravel()
    if scores.shape != reference.shape:
        raise ValueError(f"scores and reference must have the same number of entries, got {scores.size} "
                         f"and {reference.size}.")
    if not isinstance(k, int) or not 1 <= k <= scores.size:
        raise ValueError(f"k must be an int from 1 to {scores.size}, got {k!r}.")
    validate.finite(scores, "scores")
    validate.finite(reference, "reference (for a PatchResult, compare only the computed columns)")
    top = lambda values: set(np.argsort(-values, kind="stable")[:k].tolist())  # noqa: E731
    return len(top(scores) & top(reference)) / k


__all__ = ["KINDS", "PromptPair", "make_pair", "fact_pairs", "symmetric_pairs", "logit_difference", "sites",
           "run_with_cache",
           "PatchResult", "normalised_recovery", "activation_patching", "attribution_patching", "CORRUPTIONS", "METRICS",
           "corruption_by_metric", "LensResult",
           "logit_lens", "top_k_overlap"]
