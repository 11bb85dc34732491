"""Where things are inside a decoder-only transformer, for every episode that hooks one.

Causal tracing (episode 08), activation patching (09) and the episodes that read
or change the residual stream all need the same handful of lookups: the decoder
layers, each layer's attention and MLP, the input embedding, the final norm, the
unembedding, and the projection whose input holds the attention heads side by side.
``ARCHITECTURES`` is the only place that names these modules. Add a line to it to
use a new model family.

A decoder layer's forward hook sees its output either as a tensor or as a tuple
whose first element is the hidden state, depending on the architecture and the
version of ``transformers``. ``layer_output`` and ``with_layer_output`` hide that.
"""

from contextlib import contextmanager

# Module paths per architecture (config.model_type).
_LLAMA = {"layers": "model.layers", "mlp": "mlp", "attn": "self_attn", "embed": "model.embed_tokens",
          "final_norm": "model.norm", "head_projection": "o_proj"}
ARCHITECTURES = {
    "llama": _LLAMA,
    "mistral": _LLAMA,
    "qwen2": _LLAMA,
    "gpt2": {"layers": "transformer.h", "mlp": "mlp", "attn": "attn", "embed": "transformer.wte",
             "final_norm": "transformer.ln_f", "head_projection": "c_proj"},
}


def get_module(root, dotted):
    """``root.a.b.c`` for ``dotted == "a.b.c"``."""
    for name in dotted.split("."):
        root = getattr(root, name)
    return root


def architecture(model):
    """The module paths of ``model``'s family; a ValueError that says how to add one if it is unknown."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    if model_type not in ARCHITECTURES:
        raise ValueError(f"The lesson does not know the module names of model type {model_type!r}. "
                         f"Known types: {sorted(ARCHITECTURES)}. Add an entry to "
                         "xai_lesson.transformer.ARCHITECTURES with the paths of its layers, MLP, "
                         "attention, input embedding, final norm and attention output projection.")
    return ARCHITECTURES[model_type]


def model_modules(model):
    """The modules the lesson hooks.

    A dict with lists ``"layers"`` (also under ``"hidden"``), ``"mlp"``, ``"attn"`` and
    ``"head_projection"``, one entry per decoder layer, and the modules ``"embed"``,
    ``"final_norm"`` and ``"unembed"``.
    """
    paths = architecture(model)
    layers = list(get_module(model, paths["layers"]))
    attn = [get_module(layer, paths["attn"]) for layer in layers]
    return {"layers": layers, "hidden": layers,
            "mlp": [get_module(layer, paths["mlp"]) for layer in layers],
            "attn": attn,
            "head_projection": [get_module(module, paths["head_projection"]) for module in attn],
            "embed": get_module(model, paths["embed"]),
            "final_norm": get_module(model, paths["final_norm"]),
            "unembed": model.get_output_embeddings()}


def layer_output(output):
    """The hidden state in a module's output, which may be a tensor or a tuple that starts with it."""
    return output[0] if isinstance(output, tuple) else output


def with_layer_output(output, tensor):
    """``output`` with its hidden state replaced by ``tensor``, in the same form (tensor or tuple)."""
    return (tensor,) + tuple(output[1:]) if isinstance(output, tuple) else tensor


@contextmanager
def hooks(pairs):
    """Register ``(module, hook)`` forward hooks; remove them however the block ends."""
    handles = []
    try:
        for module, hook in pairs:
            handles.append(module.register_forward_hook(hook))
        yield
    finally:
        for handle in handles:
            handle.remove()


@contextmanager
def count_positions(model):
    """Count the token positions that go through the model's first decoder layer while the block runs.

    Yields a dict whose ``"positions"`` grows by rows x tokens at every forward pass
    (a pass with a key-value cache counts only its new tokens). It is a measure of work
    that does not depend on the machine: every decoder layer does about the same work per position.
    """
    counted = {"positions": 0}

    def hook(module, args, kwargs):
        hidden = args[0] if args else kwargs["hidden_states"]
        counted["positions"] += hidden.shape[0] * hidden.shape[1]

    handle = model_modules(model)["layers"][0].register_forward_pre_hook(hook, with_kwargs=True)
    try:
        yield counted
    finally:
        handle.remove()
