"""xai_lesson.transformer: the one place that names a decoder's modules, on tiny GPT-2 and Llama models."""

from types import SimpleNamespace

import pytest
import torch

from tests import toys
from xai_lesson import transformer


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_model_modules_finds_every_module(architecture):
    model = toys.lm(architecture)
    modules = transformer.model_modules(model)
    n = model.config.num_hidden_layers
    for name in ("layers", "hidden", "mlp", "attn", "head_projection"):
        assert len(modules[name]) == n, name
    assert modules["layers"] is modules["hidden"]
    assert modules["unembed"] is model.get_output_embeddings()
    # The final norm and the unembedding give the model's own logits from the last layer's output.
    ids = torch.tensor([[1, 5, 7, 3]])
    with torch.inference_mode():
        out = model(ids, output_hidden_states=True)
        pre_norm = {}
        with transformer.hooks([(modules["layers"][-1],
                                 lambda m, i, o: pre_norm.setdefault("h", transformer.layer_output(o)))]):
            model(ids)
        logits = modules["unembed"](modules["final_norm"](pre_norm["h"]))
    torch.testing.assert_close(logits, out.logits)
    # The head projection's input holds the heads side by side: its width is the model width.
    assert modules["head_projection"][0].weight.shape[-1 if architecture == "llama" else 0] == model.config.hidden_size


def test_unknown_architecture_names_the_fix():
    model = SimpleNamespace(config=SimpleNamespace(model_type="mamba"))
    with pytest.raises(ValueError, match="xai_lesson.transformer.ARCHITECTURES"):
        transformer.model_modules(model)


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_hooks_are_removed_even_when_the_block_raises(architecture):
    model = toys.lm(architecture)
    layers = transformer.model_modules(model)["layers"]
    before = [len(layer._forward_hooks) for layer in layers]
    with pytest.raises(RuntimeError):
        with transformer.hooks([(layer, lambda m, i, o: None) for layer in layers]):
            assert [len(layer._forward_hooks) for layer in layers] == [n + 1 for n in before]
            raise RuntimeError("stop")
    assert [len(layer._forward_hooks) for layer in layers] == before


def test_layer_output_round_trip():
    hidden, other = torch.zeros(2, 3), torch.ones(1)
    assert transformer.layer_output((hidden, other)) is hidden
    assert transformer.layer_output(hidden) is hidden
    new = torch.full((2, 3), 2.0)
    assert transformer.with_layer_output((hidden, other), new) == (new, other)
    assert transformer.with_layer_output(hidden, new) is new


@pytest.mark.parametrize("architecture", ["llama", "gpt2"])
def test_count_positions_counts_rows_times_tokens_and_removes_its_hook(architecture):
    model = toys.lm(architecture)
    first = transformer.model_modules(model)["layers"][0]
    with torch.inference_mode(), transformer.count_positions(model) as counted:
        model(torch.tensor([[1, 5, 7, 3], [2, 2, 2, 2]]))
        model(torch.tensor([[4, 6]]))
    assert counted["positions"] == 2 * 4 + 2
    assert not first._forward_pre_hooks
