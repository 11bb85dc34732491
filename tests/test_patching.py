"""Activation patching, attribution patching and the logit lens: properties the reference must have.

Most tests use the tiny random Llama and GPT-2 models of test_tracing.py (built from a
config, no download), so they run in seconds on two architectures; one hand-built model is
linear in the patched activation, where attribution patching must be exact.
"""

import numpy as np
import pytest
import torch
from transformers import AutoTokenizer

from test_tracing import _tiny_model
from xai_lesson import patching, tracing
from xai_lesson.models import cache_smollm2
from xai_lesson.patching import PromptPair, activation_patching, attribution_patching, make_pair

PROMPT, SUBJECT, REPLACEMENT = "The capital of Japan is", "Japan", "Germany"


@pytest.fixture(scope="module")
def tokenizer():
    return AutoTokenizer.from_pretrained(cache_smollm2())


@pytest.fixture(scope="module", params=["llama", "gpt2"])
def tiny(request, tokenizer):
    return _tiny_model(request.param, len(tokenizer))


@pytest.fixture(scope="module")
def pair(tokenizer):
    return make_pair(tokenizer, PROMPT, SUBJECT, REPLACEMENT, " Tokyo", " Berlin")


def _manual_patch(model, pair, module, position, head=None, heads=1):
    """One patched run written out with a forward hook, no batching, no cache."""
    cache = {}

    def keep(mod, args, output=None):
        tensor = args[0] if head is not None else (output[0] if isinstance(output, tuple) else output)
        cache["clean"] = tensor[0].detach().clone()

    def patch_pre(mod, args):
        x = args[0].clone()
        width = x.shape[-1] // heads
        x[0, position, head * width:(head + 1) * width] = cache["clean"][position, head * width:(head + 1) * width]
        return (x,) + args[1:]

    def patch_post(mod, args, output):
        hidden = (output[0] if isinstance(output, tuple) else output).clone()
        hidden[0, position] = cache["clean"][position]
        return (hidden,) + tuple(output[1:]) if isinstance(output, tuple) else hidden

    with torch.no_grad():
        handle = (module.register_forward_pre_hook(keep) if head is not None else module.register_forward_hook(keep))
        model(input_ids=pair.clean_ids)
        handle.remove()
        handle = (module.register_forward_pre_hook(patch_pre) if head is not None
                  else module.register_forward_hook(patch_post))
        logits = model(input_ids=pair.corrupted_ids).logits[0, -1]
        handle.remove()
    return float(patching.logit_difference(logits, pair))


@pytest.mark.parametrize("kind", patching.KINDS)
def test_patching_the_clean_run_into_itself_changes_nothing(tiny, pair, kind):
    itself = PromptPair(pair.clean_ids, pair.clean_ids.clone(), pair.clean_answer_id, pair.corrupted_answer_id)
    result = activation_patching(tiny, itself, kind=kind, skip_shared_prefix=False)
    assert result.clean == pytest.approx(result.corrupted, abs=1e-5)
    assert not np.isnan(result.patched).any()
    np.testing.assert_allclose(result.patched, result.corrupted, atol=1e-4)
    # The same code does change the answer when the prompts differ: the check can fail.
    real = activation_patching(tiny, pair, kind=kind)
    assert np.nanmax(np.abs(real.patched - real.corrupted)) > 0.01


def test_patching_the_last_layer_recovers_the_clean_logit_difference_exactly(tiny, pair):
    result = activation_patching(tiny, pair, kind="hidden")
    assert abs(result.clean - result.corrupted) > 0.1, "the test needs prompts the tiny model tells apart"
    # At the last layer only the last position reaches the logits: patching it is the clean run,
    # patching any other position changes nothing.
    assert result.recovery[-1, -1] == pytest.approx(1.0, abs=1e-4)
    np.testing.assert_allclose(result.recovery[-1, :-1], 0.0, atol=1e-4)


@pytest.mark.parametrize("kind", ["hidden", "attn", "mlp"])
def test_batched_patching_matches_one_run_at_a_time(tiny, pair, kind):
    batched = activation_patching(tiny, pair, kind=kind, batch_size=7)
    unskipped = activation_patching(tiny, pair, kind=kind, skip_shared_prefix=False, batch_size=64)
    np.testing.assert_allclose(batched.patched, unskipped.patched, atol=1e-4)
    modules = patching.sites(tiny, kind)
    for layer, position in [(0, 3), (2, 4), (5, 4), (3, 0)]:
        manual = _manual_patch(tiny, pair, modules[layer].module, position)
        assert batched.patched[layer, position] == pytest.approx(manual, abs=1e-4)
    assert batched.runs == 6 * 2  # 6 layers x the 2 positions from the first differing token on


def test_corruption_by_metric_reproduces_patching_and_the_causal_trace(tiny, tokenizer, pair):
    position, layers = pair.subject_range[1] - 1, [0, 2, 5]
    table = patching.corruption_by_metric(tiny, pair, layers, position, noise=0.5, samples=3)
    # Patching scored by the logit difference is activation patching's map.
    patched = activation_patching(tiny, pair, kind="hidden")
    np.testing.assert_allclose(table["patching"]["logit difference"], patched.recovery[layers, position], atol=1e-4)
    # Noise scored by probability is the causal trace with the same draws, normalised by its total effect.
    with pytest.warns(UserWarning):  # the tiny random model gives the answer a low probability
        trace = tracing.causal_trace(tiny, tokenizer, PROMPT, SUBJECT, answer=" Tokyo", noise=0.5, samples=3)
    np.testing.assert_allclose(table["tracing"]["probability"] * (trace.clean_prob - trace.corrupted_prob),
                               trace.scores[layers, position], atol=1e-5)
    assert set(table) == set(patching.CORRUPTIONS) and all(set(v) == set(patching.METRICS) for v in table.values())


def test_head_patching_copies_one_head_at_the_last_token(tiny, pair):
    result = activation_patching(tiny, pair, kind="head", batch_size=5)
    heads = tiny.config.num_attention_heads
    assert result.patched.shape == (6, heads) and result.runs == 6 * heads
    modules = patching.sites(tiny, "head")
    for layer, head in [(0, 0), (3, 2), (5, 3)]:
        manual = _manual_patch(tiny, pair, modules[layer].module, -1, head=head, heads=heads)
        assert result.patched[layer, head] == pytest.approx(manual, abs=1e-4)


class LinearInTheSite(torch.nn.Module):
    """Embedding -> tanh -> site (a linear map) -> causal mean over positions -> unembedding.

    The logits, and so the logit difference, are linear in the site's output.
    """

    def __init__(self, vocab=20, width=8):
        super().__init__()
        generator = torch.Generator().manual_seed(0)
        self.embed = torch.nn.Embedding(vocab, width)
        self.site = torch.nn.Linear(width, width)
        self.unembed = torch.nn.Linear(width, vocab)
        for parameter in self.parameters():
            torch.nn.init.normal_(parameter, generator=generator)

    def forward(self, ids):
        hidden = self.site(torch.tanh(self.embed(ids)))
        weights = torch.tril(torch.ones(ids.shape[1], ids.shape[1]))
        return self.unembed((weights / weights.sum(1, keepdim=True)) @ hidden)


def test_attribution_patching_is_exact_when_the_model_is_linear_in_the_patched_activation():
    model = LinearInTheSite().eval()
    pair = PromptPair(torch.tensor([[1, 2, 3, 4, 5]]), torch.tensor([[1, 9, 8, 4, 5]]), 6, 7)
    real = activation_patching(model, pair, site_list=[model.site])
    estimate = attribution_patching(model, pair, site_list=[model.site])
    assert np.abs(real.patched - real.corrupted).max() > 0.1, "the patches must change the logit difference"
    np.testing.assert_allclose(estimate.patched, real.patched, atol=1e-4)
    assert estimate.runs == 2 and estimate.backward == 1


def test_attribution_patching_is_not_exact_on_a_nonlinear_model(tiny, pair):
    """On a real (nonlinear) model the estimate is an approximation: the last test is not vacuous."""
    real = activation_patching(tiny, pair, kind="hidden")
    estimate = attribution_patching(tiny, pair, kind="hidden")
    assert estimate.patched.shape == real.patched.shape
    assert estimate.clean == pytest.approx(real.clean, abs=1e-5)
    assert estimate.corrupted == pytest.approx(real.corrupted, abs=1e-5)
    np.testing.assert_allclose(estimate.patched[:, :3], real.corrupted, atol=1e-4)  # shared prefix: no change
    assert np.abs(estimate.patched - real.patched).max() > 1e-3


def test_logit_lens_at_the_last_layer_is_the_models_output(tiny, tokenizer):
    lens = patching.logit_lens(tiny, tokenizer, PROMPT, " Tokyo")
    answer = tokenizer(" Tokyo", add_special_tokens=False)["input_ids"][0]
    with torch.no_grad():
        probs = tiny(**tokenizer(PROMPT, return_tensors="pt")).logits[0, -1].softmax(-1)
    assert lens.probs.shape == (6,) and lens.ranks.shape == (6,)
    assert lens.probs[-1] == pytest.approx(float(probs[answer]), rel=1e-4)
    assert lens.ranks[-1] == int((probs > probs[answer]).sum())
    assert lens.top_tokens[-1] == tokenizer.decode([int(probs.argmax())])


def test_fact_pairs_have_same_length_prompts_and_different_answers(tokenizer):
    pairs = patching.fact_pairs(tokenizer)
    assert len(pairs) >= 10
    for fact, other, pair in pairs:
        assert pair.clean_ids.shape == pair.corrupted_ids.shape
        assert pair.clean_answer_id != pair.corrupted_answer_id
        assert fact["relation"] == other["relation"]


def test_symmetric_pairs_hold_every_pair_in_both_orders(tokenizer):
    pairs = patching.symmetric_pairs(tokenizer)
    names = [(fact["subject"], other["subject"]) for fact, other, _ in pairs]
    assert len(names) == len(set(names)) and len(names) % 2 == 0
    assert all((b, a) in names for a, b in names)
    for (fact, other, pair), (_, _, reverse) in zip(pairs[::2], pairs[1::2]):
        assert pair.clean_ids.shape == pair.corrupted_ids.shape and fact["relation"] == other["relation"]
        assert torch.equal(pair.clean_ids, reverse.corrupted_ids) and pair.clean_answer_id == reverse.corrupted_answer_id
    with pytest.raises(ValueError, match="symmetric fact pairs"):
        patching.symmetric_pairs(tokenizer, patching.tracing.load_known_facts()[:1])


def test_top_k_overlap():
    assert patching.top_k_overlap([3, 2, 1, 0], [30, 20, 10, 0], 2) == 1.0
    assert patching.top_k_overlap([0, 1, 2, 3], [30, 20, 10, 0], 2) == 0.0
    with pytest.raises(ValueError, match="k must be"):
        patching.top_k_overlap([1, 2], [1, 2], 3)


def test_bad_inputs_say_how_to_fix_them(tiny, tokenizer, pair):
    with pytest.raises(ValueError, match="same number of tokens"):
        make_pair(tokenizer, "The mother tongue of Leo Tolstoy is", "Leo Tolstoy", "Victor Hugo", " Russian", " French")
    with pytest.raises(ValueError, match="different token"):
        make_pair(tokenizer, PROMPT, SUBJECT, REPLACEMENT, " Tokyo", " Tokyo")
    with pytest.raises(ValueError, match="does not occur"):
        make_pair(tokenizer, PROMPT, "japan", REPLACEMENT, " Tokyo", " Berlin")
    with pytest.raises(ValueError, match="tokenizer"):
        PromptPair([[1, 2]], torch.tensor([[1, 2]]), 1, 2)
    with pytest.raises(ValueError, match="kind must be"):
        activation_patching(tiny, pair, kind="residual")
    with pytest.raises(ValueError, match="position must be"):
        activation_patching(tiny, pair, kind="head", position=9)
    with pytest.raises(ValueError, match="batch_size"):
        activation_patching(tiny, pair, batch_size=0)
    with pytest.raises(TypeError, match="PromptPair"):
        attribution_patching(tiny, "The capital of Japan is")
    with pytest.raises(ValueError, match="nothing to recover"):
        patching.normalised_recovery([1.0], 2.0, 2.0)
    tiny.train()
    try:
        with pytest.raises(ValueError, match="model.eval"):
            activation_patching(tiny, pair)
    finally:
        tiny.eval()
