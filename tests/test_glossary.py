"""The glossary in learners/reference.md defines the technical terms the episodes use.

TERMS lists, for each episode, the terms it introduces. The test checks both
sides: the episode really uses each term, and the glossary defines it. When an
episode introduces a new term, add it here and to the glossary.
"""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

TERMS = {
    "01-introduction": ["explainable AI", "white-box", "black-box", "local", "global", "Clever Hans",
                        "spurious correlation", "embedding", "cosine similarity", "token", "transformer",
                        "adversarial example", "fast gradient sign method", "basic iterative method",
                        "projected gradient descent", "interpretable by design", "rationale",
                        "concept bottleneck model", "rule extraction", "anchor", "fidelity", "influence function",
                        "TracIn", "training-data attribution", "code-along exercise", "check cell",
                        "claim check"],
    "02-saliency-maps": ["saliency map", "attribution map", "logit", "gradient", "gradient × input", "SmoothGrad",
                         "Integrated Gradients", "baseline", "completeness", "saturat", "occlusion",
                         "class-discriminative", "leave-one-out", "input invariance", "plausibility", "faithful",
                         "midpoint rule", "trapezoid rule", "Gauss–Legendre", "permutation test"],
    "03-evaluating-saliency": ["cascading randomisation", "Spearman rank correlation", "pointing game",
                               "model-randomisation test", "Guided Backpropagation", "stem", "Sobel filter",
                               "live", "logit spread", "data-randomisation test", "BatchNorm",
                               "bootstrap interval"],
    "04-gradcam": ["feature map", "channel", "class activation map", "forward hook", "GradCAM", "GradCAM++",
                   "ScoreCAM", "EigenCAM", "LayerCAM", "target layer", "spurious", "deletion", "faithful",
                   "model-randomisation test", "stride", "receptive field", "guided backpropagation",
                   "Guided GradCAM", "insertion", "ROAD", "SVD"],
    "05-perturbations": ["perturbation method", "black box", "model-agnostic", "leave-one-out", "input reduction",
                         "LIME", "surrogate model", "word piece", "Shapley value", "KernelSHAP", "efficiency",
                         "comprehensiveness", "sufficiency", "faithful", "entropy regulariser",
                         "LayerNorm", "paired", "coalition", "Holm's method", "p-value", "paired t-interval",
                         "first-order estimate"],
    "06-attacking-text-models": ["adversarial perturbation", "HotFlip", "universal trigger", "flip rate",
                                 "challenge set", "minimal pair", "counterfactual", "log-odds", "sentiment lexicon",
                                 "meaning-preservation constraint", "minimum functionality test", "invariance test",
                                 "directional expectation test", "reflexive pronoun", "winner's curse",
                                 "control edit"],
    "07-probing": ["probe", "linear probe", "hidden state", "mean pooling", "padding", "attention mask",
                   "cross-validation", "majority-class baseline", "bag-of-words", "re-initialised", "part of speech",
                   "silver labels", "control task", "selectivity", "multi-layer perceptron", "intervention",
                   "paired", "most frequent tag", "regularisation", "forward hook", "amnesic probing", "INLP",
                   "selection effect", "single-direction ablation", "corrected resampled t-test", "distilled",
                   "matched accuracy", "McNemar's test", "normal approximation", "nullspace", "standardise"],
    "08-causal-tracing": ["causal tracing", "clean run", "corrupted run", "restored run", "subject", "indirect effect",
                          "forward hook", "residual stream", "decoder layer", "window", "resample ablation",
                          "mean ablation", "total effect", "positive control", "logit difference", "severed MLP",
                          "instruction tuning", "quantisation", "causal mediation analysis",
                          "beginning-of-sequence token", "causal attention"],
    "09-activation-patching": ["activation patching", "patched run", "logit difference", "normalised recovery",
                               "attribution patching", "logit lens", "tuned lens", "residual stream",
                               "denoising", "noising", "direct logit attribution", "GradDrop"],
    "10-training-data-attribution": ["training-data attribution", "influence function", "TracIn",
                                     "leave-one-out retraining", "Hessian", "checkpoint", "proponent", "opponent",
                                     "self-influence", "leverage", "regularisation", "Spearman rank correlation",
                                     "paired", "cosine similarity"],
}

# A term used in an episode may be an inflected or hyphenated form of the glossary's headword.
GLOSSARY_HEADWORD = {"white-box": "white-box method", "black-box": "black-box method", "black box": "black-box method",
                     "local": "local explanation", "global": "global explanation", "Clever Hans": "Clever Hans model",
                     "saturat": "saturation", "spurious": "spurious correlation", "deletion": "deletion curve", "insertion": "insertion curve",
                     "faithful": "faithfulness", "leave-one-out": "leave-one-out importance",
                     "bag-of-words": "bag of words", "paired": "paired comparison",
                     "most frequent tag": "most-frequent-tag baseline", "re-initialised": "re-initialised model",
                     "clean run": "clean, corrupted and restored runs", "corrupted run": "clean, corrupted and restored runs",
                     "restored run": "clean, corrupted and restored runs", "live": "live network",
                     "midpoint rule": "quadrature rule", "trapezoid rule": "quadrature rule",
                     "Gauss–Legendre": "quadrature rule",
                     "denoising": "denoising and noising", "noising": "denoising and noising",
                     "proponent": "proponent and opponent", "opponent": "proponent and opponent",
                     "distilled": "distillation"}


def glossary():
    """The glossary's headwords, lower case, with any abbreviation in brackets split off."""
    text = (ROOT / "learners" / "reference.md").read_text(encoding="utf-8")
    section = text.split("## Glossary", 1)[1].split("\n## ", 1)[0]
    headwords = re.findall(r"^(\S[^\n]*)\n:   ", section, flags=re.MULTILINE)
    terms = set()
    for headword in headwords:
        terms.add(headword.lower())
        match = re.fullmatch(r"(.+?) \((.+)\)", headword)
        if match:
            terms.update({match.group(1).lower(), match.group(2).lower()})
    return headwords, terms


def test_glossary_is_a_sorted_definition_list():
    headwords, _ = glossary()
    assert len(headwords) >= 40
    assert headwords == sorted(headwords, key=str.lower), "keep the glossary in alphabetical order"
    assert len(set(h.lower() for h in headwords)) == len(headwords), "a term is defined twice"


def test_every_episode_is_listed():
    episodes = sorted(p.stem for p in (ROOT / "episodes").glob("[0-9][0-9]-*.md"))
    assert sorted(TERMS) == episodes, "add the new episode's terms to TERMS"


@pytest.mark.parametrize("episode", sorted(TERMS))
def test_episode_terms_are_used_and_defined(episode):
    text = (ROOT / "episodes" / f"{episode}.md").read_text(encoding="utf-8").lower()
    _, defined = glossary()
    unused = [term for term in TERMS[episode] if term.lower() not in text]
    assert not unused, f"{episode} does not use {unused}: remove them from TERMS"
    undefined = [term for term in TERMS[episode] if GLOSSARY_HEADWORD.get(term, term).lower() not in defined]
    assert not undefined, f"learners/reference.md has no glossary entry for {undefined}"
