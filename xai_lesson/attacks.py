"""Honest attacks on, and behavioural tests of, text classifiers.

The attacks themselves (``hotflip``, ``universal_trigger``, ``flip_rate``) live in
``xai_lesson.perturbation``. This module holds what it takes to report them
honestly:

- a sentiment lexicon (VADER's, read from the checksummed vaderSentiment sdist the
  lesson already prepares its data from), to ban words that change the label
  rather than fool the model;
- word-embedding similarity, a simple meaning-preservation constraint;
- an ablation of a universal trigger against many random triggers;
- CheckList-style tests (Ribeiro et al. 2020): minimum functionality, invariance
  and directional expectation tests, each with a failure rate;
- published occupational gender statistics (US Bureau of Labor Statistics, Current
  Population Survey 2022, table 11) to compare a language model's pronoun
  preferences with.

References: Hutto and Gilbert (2014) for VADER; Ebrahimi et al. (2018) for HotFlip;
Wallace et al. (2019) for universal triggers; Ribeiro et al. (2020) for CheckList.
"""

import csv
import io
import tarfile
from dataclasses import dataclass

import numpy as np
import torch

from xai_lesson import data, validate
from xai_lesson.perturbation import whole_word_vocabulary
from xai_lesson.prepare import VADER_SDIST

VADER_LEXICON = "vaderSentiment-3.3.2/vaderSentiment/vader_lexicon.txt"
OCCUPATIONS_CSV = "occupations/bls_cpsaat11_2022.csv"
OCCUPATION_COLUMNS = ("lesson_word", "bls_occupation", "percent_women", "total_employed_thousands", "year",
                      "source_url")


def parse_vader_lexicon(text):
    """{entry: mean valence} from the text of ``vader_lexicon.txt``.

    Each line is ``entry<TAB>mean<TAB>standard deviation<TAB>[ten human ratings]``;
    the mean runs from -4 (most negative) to +4 (most positive).
    """
    lexicon = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            lexicon[fields[0]] = float(fields[1])
        except (IndexError, ValueError):
            raise ValueError(f"line {number} of the VADER lexicon is not 'entry<TAB>mean<TAB>...': {line[:60]!r}") \
                from None
    if not lexicon:
        raise ValueError("the VADER lexicon is empty.")
    return lexicon


def vader_lexicon():
    """VADER's sentiment lexicon (Hutto and Gilbert 2014), 7,506 entries with their mean valence.

    Read, without unpacking anything to disk, from the vaderSentiment 3.3.2 source
    distribution in ``data/external``, whose checksum is verified first.
    """
    path = data.verified_file(VADER_SDIST)
    with tarfile.open(path) as sdist:
        raw = sdist.extractfile(VADER_LEXICON).read()
    return parse_vader_lexicon(io.TextIOWrapper(io.BytesIO(raw), encoding="utf-8").read())


def vocabulary_without(tokenizer, banned, min_length=3):
    """``whole_word_vocabulary(tokenizer)`` minus every token in ``banned`` (compared in lower case)."""
    if isinstance(banned, str):
        raise TypeError("banned must be a collection of words (for example vader_lexicon()), not one string.")
    banned = {word.lower() for word in banned}
    vocabulary = whole_word_vocabulary(tokenizer, min_length=min_length)
    tokens = tokenizer.convert_ids_to_tokens(vocabulary.tolist())
    keep = torch.tensor([token not in banned for token in tokens])
    validate.not_empty(int(keep.sum()), "the vocabulary without the banned words", "ban fewer words.")
    return vocabulary[keep]


def cosine_similarity(table, ids_a, ids_b):
    """Cosine similarity between the embeddings (rows of ``table``) of two lists of token ids:
    shape (len(ids_a), len(ids_b))."""
    if not torch.is_tensor(table) or table.ndim != 2:
        raise ValueError(f"table must be an embedding matrix (vocabulary, dim), got "
                         f"{tuple(table.shape) if torch.is_tensor(table) else type(table).__name__}.")
    validate.token_ids(ids_a, len(table), "ids_a")
    validate.token_ids(ids_b, len(table), "ids_b")
    a = torch.nn.functional.normalize(table[torch.as_tensor(ids_a)], dim=-1)
    b = torch.nn.functional.normalize(table[torch.as_tensor(ids_b)], dim=-1)
    return a @ b.T


@dataclass
class TriggerAblation:
    """Flip rates of a trigger, of each of its words, of the trigger without some words,
    and of random triggers: ``random_rates`` for random triggers as long as the trigger,
    ``random_by_length[n]`` for random triggers of ``n`` words."""

    trigger: float
    words: dict
    without: dict
    random_triggers: list
    random_rates: np.ndarray
    random_by_length: dict = None

    def percentile(self, rate, length=None):
        """Share of the random triggers (of ``length`` words; default the trigger's length)
        that flip fewer texts than ``rate``."""
        rates = self.random_rates if length is None else self.random_by_length[length]
        return float(np.mean(rates < rate))


def ablate_trigger(predict_proba, texts, label, tokens, vocabulary_tokens, n_random=20, seed=0, drop=(),
                   random_lengths=None):
    """Flip rates for a trigger (a list of words), each word alone, the trigger without
    each word in ``drop``, and ``n_random`` random triggers of each length in
    ``random_lengths`` (default: the trigger's length only), drawn from
    ``vocabulary_tokens`` with ``numpy.random.default_rng(seed)``.

    Compare each part of the trigger with random triggers of its own length: a word
    alone with random single words, the trigger without one word with random triggers
    one word shorter. Everything is scored in one call to ``predict_proba``."""
    if isinstance(tokens, str) or len(tokens) < 1:
        raise ValueError(f"tokens must be a list of the trigger's words, got {tokens!r}.")
    missing = [w for w in drop if w not in tokens]
    if missing:
        raise ValueError(f"cannot drop {missing}: they are not in the trigger {tokens!r}.")
    validate.count(n_random, "n_random (a spread needs several random triggers)", minimum=2)
    lengths = [len(tokens)] if random_lengths is None else list(random_lengths)
    if not lengths or not all(validate.is_int(n) and n >= 1 for n in lengths) or len(set(lengths)) < len(lengths):
        raise ValueError(f"random_lengths must be distinct whole numbers of words, at least 1, got {random_lengths!r}.")
    vocabulary_tokens = list(vocabulary_tokens)
    validate.not_empty(len(vocabulary_tokens), "vocabulary_tokens", "pass the words random triggers are drawn from.")
    rng = np.random.default_rng(seed)
    random_triggers = {n: [" ".join(vocabulary_tokens[i] for i in rng.choice(len(vocabulary_tokens), n))
                           for _ in range(n_random)] for n in lengths}
    without = [" ".join(t for t in tokens if t != w) for w in drop]
    drawn = [t for n in lengths for t in random_triggers[n]]
    rates = flip_rates(predict_proba, texts, label, [" ".join(tokens), *tokens, *without, *drawn])
    start = 1 + len(tokens) + len(drop)
    by_length = {n: np.array(rates[start + k * n_random:start + (k + 1) * n_random]) for k, n in enumerate(lengths)}
    own = len(tokens) if len(tokens) in by_length else lengths[0]
    return TriggerAblation(
        trigger=rates[0],
        words=dict(zip(tokens, rates[1:1 + len(tokens)])),
        without=dict(zip(drop, rates[1 + len(tokens):start])),
        random_triggers=random_triggers[own],
        random_rates=by_length[own],
        random_by_length=by_length)


def flip_rates(predict_proba, texts, label, prefixes):
    """``[flip_rate(predict_proba, texts, label, prefix) for prefix in prefixes]``, with one call
    to ``predict_proba`` for all of them, so that a classifier that batches texts of similar
    length together (as ``SentimentClassifier.predict_proba`` does) wastes little on padding."""
    if isinstance(prefixes, str):
        raise TypeError("prefixes must be a list of strings, not one string: wrap it as [prefix].")
    prefixes, texts = list(prefixes), validate.texts(texts)
    if not prefixes or not all(isinstance(p, str) for p in prefixes):
        raise ValueError("prefixes must be a non-empty list of strings.")
    validate.class_index(label, name="label")
    joined = [f"{prefix} {t}".strip() for prefix in prefixes for t in texts]
    probs = validate.probabilities(predict_proba(joined), len(joined))
    validate.class_index(label, probs.shape[1], "label")
    probs = probs.reshape(len(prefixes), len(texts), -1)
    return [float(v) for v in (probs.argmax(-1) != label).mean(1)]


# ---------------------------------------------------------------------------
# CheckList (Ribeiro et al. 2020)
# ---------------------------------------------------------------------------

def fill_templates(templates, **slots):
    """Every filling of every template: ``fill_templates(["The {thing} is {adj}."], thing=[...], adj=[...])``."""
    from itertools import product

    if isinstance(templates, str):
        templates = [templates]
    names = list(slots)  # the order the slots were given in
    texts = []
    for template in templates:
        used = [n for n in names if "{" + n + "}" in template]
        for values in product(*(slots[n] for n in used)):
            texts.append(template.format(**dict(zip(used, values))))
    if not texts:
        raise ValueError("the templates produced no texts: check that each slot has values.")
    return texts


def _pairs(pairs):
    pairs = list(pairs)
    if not pairs or not all(isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(t, str) for t in p)
                            for p in pairs):
        raise ValueError("pairs must be a non-empty list of (original, edited) pairs of strings.")
    return pairs


def mft_failures(predict_proba, texts, expected):
    """Minimum functionality test: which texts are not predicted as class ``expected``."""
    texts = validate.texts(texts)
    validate.class_index(expected, name="expected")
    probs = validate.probabilities(predict_proba(texts), len(texts))
    validate.class_index(expected, probs.shape[1], "expected")
    return probs.argmax(1) != expected


def invariance_failures(predict_proba, pairs, tolerance=None):
    """Invariance test: a pair (original, edited) fails when the predicted class changes,
    CheckList's rule for label-preserving edits; with ``tolerance``, also when p(class 1)
    moves by more than that."""
    pairs = _pairs(pairs)
    if tolerance is not None:
        validate.number(tolerance, "tolerance (a change of p(class 1), or None)", minimum=0)
    texts = [t for pair in pairs for t in pair]
    check = validate.probabilities if tolerance is None else validate.binary_probabilities
    probs = check(predict_proba(texts), len(texts)).reshape(len(pairs), 2, -1)
    failed = probs[:, 0].argmax(-1) != probs[:, 1].argmax(-1)
    if tolerance is not None:
        failed |= np.abs(probs[:, 1, 1] - probs[:, 0, 1]) > tolerance
    return failed


def directional_changes(predict_proba, pairs):
    """Change of p(class 1) from the original to the edited text of each (original, edited) pair."""
    pairs = _pairs(pairs)
    texts = [t for pair in pairs for t in pair]
    p = validate.binary_probabilities(predict_proba(texts), len(texts))[:, 1].reshape(len(pairs), 2)
    return p[:, 1] - p[:, 0]


def directional_failures(predict_proba, pairs, direction, tolerance=0.1):
    """Directional expectation test: the edit must not move p(class 1) against ``direction``
    ("up" or "down") by more than ``tolerance``. A smaller move the wrong way passes:
    count the sign of ``directional_changes`` to see how many moved the right way."""
    if direction not in ("up", "down"):
        raise ValueError(f"direction must be 'up' or 'down', got {direction!r}.")
    validate.number(tolerance, "tolerance (a change of p(class 1))", minimum=0)
    change = directional_changes(predict_proba, pairs)
    return change < -tolerance if direction == "up" else change > tolerance


def parse_occupation_statistics(text, source="the occupation statistics"):
    """Rows of a CSV with ``OCCUPATION_COLUMNS``, numbers converted and checked.

    ``percent_women`` must lie in 0-100, ``total_employed_thousands`` be positive,
    and each ``lesson_word`` appear once. Errors name the row and say how to fix it.
    """
    fix = ("Fix that row, or restore the file with `git checkout -- data/" + OCCUPATIONS_CSV + "`; "
           "data/README.md says where every number comes from.")
    reader = csv.DictReader(io.StringIO(text))
    if reader.fieldnames is None or tuple(reader.fieldnames) != OCCUPATION_COLUMNS:
        raise ValueError(f"{source} must have the header {','.join(OCCUPATION_COLUMNS)}, "
                         f"got {','.join(reader.fieldnames or [])!r}. {fix}")
    rows, seen = [], set()
    for number, row in enumerate(reader, 2):
        try:
            row["percent_women"] = float(row["percent_women"])
            row["total_employed_thousands"] = float(row["total_employed_thousands"])
            row["year"] = int(row["year"])
        except (TypeError, ValueError):
            raise ValueError(f"line {number} of {source} needs numbers in percent_women, "
                             f"total_employed_thousands and year: {row}. {fix}") from None
        if not 0 <= row["percent_women"] <= 100 or row["total_employed_thousands"] <= 0:
            raise ValueError(f"line {number} of {source}: percent_women must lie in 0-100 and "
                             f"total_employed_thousands be positive, got {row['percent_women']} and "
                             f"{row['total_employed_thousands']}. {fix}")
        if not row["lesson_word"] or row["lesson_word"] in seen:
            raise ValueError(f"line {number} of {source}: lesson_word {row['lesson_word']!r} is empty or "
                             f"repeated. {fix}")
        seen.add(row["lesson_word"])
        rows.append(row)
    if not rows:
        raise ValueError(f"{source} has no rows. {fix}")
    return rows


def load_occupation_statistics():
    """Share of women among employed people for the lesson's occupations (list of dicts).

    US Bureau of Labor Statistics, Current Population Survey, 2022 annual averages,
    table 11 ("Employed persons by detailed occupation, sex, race, and Hispanic or
    Latino ethnicity"), one row per lesson word with its exact BLS occupation title.
    Occupations with no single matching row (teacher, doctor, scientist, engineer)
    are left out. The file's checksum is verified first.
    """
    path = data.verified_file(OCCUPATIONS_CSV)
    return parse_occupation_statistics(path.read_text(encoding="utf-8"), source=f"data/{OCCUPATIONS_CSV}")


# ---------------------------------------------------------------------------
# A random-swap baseline under an attack's constraints
# ---------------------------------------------------------------------------

def _allowed_swaps(classifier, table, ids, vocabulary, min_similarity):
    """{position: allowed replacement ids} for the positions hotflip may edit (see random_swaps)."""
    from xai_lesson.perturbation import _editable_positions

    positions = _editable_positions(classifier.tokenizer, ids[0])
    if not positions:
        return {}
    originals = torch.nn.functional.normalize(table[ids[0, positions]], dim=-1)
    similarity = originals @ torch.nn.functional.normalize(table[vocabulary], dim=-1).T
    ok = vocabulary[None, :] != ids[0, positions][:, None]
    if min_similarity is not None:
        ok &= similarity >= min_similarity
    return {p: vocabulary[row] for p, row in zip(positions, ok) if row.any()}


def _decode_edit(classifier, row, mask):
    """The text of one edited row of token ids, without its [CLS] and [SEP] (``mask`` is the original's)."""
    end = int(mask[0].sum()) - 1
    return classifier.tokenizer.decode(row[1:end])


def _swap_setup(classifier, text, vocabulary, min_similarity, max_edits):
    """Check the arguments; return ids, mask, p of the original, its label and the allowed swaps."""
    from xai_lesson.perturbation import _check_attack_text, _check_classifier, _check_min_similarity

    _check_classifier(classifier)
    _check_attack_text(text)
    validate.count(max_edits, "max_edits")
    _check_min_similarity(min_similarity)
    table = classifier.encoder.get_input_embeddings().weight.detach()
    vocabulary = validate.token_ids(vocabulary, len(table), "vocabulary")
    ids, mask = classifier.encode([text])
    first = classifier(input_ids=ids, attention_mask=mask).softmax(-1)[0]
    return ids, mask, first, int(first.argmax()), _allowed_swaps(classifier, table, ids, vocabulary, min_similarity)


@torch.no_grad()
def random_swaps(classifier, text, vocabulary, min_similarity=None, max_edits=3, n_trials=30, seed=0,
                 return_texts=False):
    """p(predicted class) after each of ``n_trials`` random edits of ``text``: the baseline
    for ``perturbation.hotflip`` under the same constraints.

    Each trial swaps ``max_edits`` distinct positions (or as many as can be edited),
    drawn at random among the positions ``hotflip`` may edit (single-token alphabetic
    whole words), each for a word drawn at random from ``vocabulary`` among those whose
    input embedding has cosine similarity of at least ``min_similarity`` with the
    original word (all of ``vocabulary`` if None), never the word itself. A position with
    no allowed word is never chosen. The draws use ``numpy.random.default_rng(seed)``.

    Returns (p before, array of p after each trial). With ``n_trials`` equal to the
    number of candidates ``hotflip`` tries (``max_edits * n_candidates``), the
    baseline has the same number of model calls as the attack. With ``return_texts``,
    a third element lists the edited texts, so that a success can be read.
    """
    validate.count(n_trials, "n_trials")
    ids, mask, first, label, allowed = _swap_setup(classifier, text, vocabulary, min_similarity, max_edits)
    if not allowed:
        return (float(first[label]), np.array([])) + (([],) if return_texts else ())
    rng = np.random.default_rng(seed)
    editable = sorted(allowed)
    trials = ids.repeat(n_trials, 1)
    for t in range(n_trials):
        for p in rng.choice(editable, min(max_edits, len(editable)), replace=False):
            words = allowed[int(p)]
            trials[t, p] = words[rng.integers(len(words))]
    after = classifier(input_ids=trials, attention_mask=mask.repeat(n_trials, 1)).softmax(-1)[:, label]
    result = float(first[label]), after.numpy().astype(float)
    if return_texts:
        result += ([_decode_edit(classifier, row, mask) for row in trials],)
    return result


@dataclass
class SwapSpace:
    """Every edit allowed under an attack's constraints, searched exhaustively (``exhaustive_swaps``)."""
    p_before: float   # p(predicted class) of the original text
    n_swaps: int      # allowed (position, word) pairs
    n_edits: int      # edits of 1 to max_edits swaps at distinct positions
    p_min: float      # lowest p(predicted class) over those edits (p_before if there is none)
    best_text: str    # the edit that reaches p_min (the original text if there is none)


@torch.no_grad()
def exhaustive_swaps(classifier, text, vocabulary, min_similarity=None, max_edits=3, batch_size=512, search=True):
    """Search every edit of 1 to ``max_edits`` swaps that ``random_swaps`` and ``perturbation.hotflip``
    may make under the same constraints (positions, vocabulary, similarity), and return a ``SwapSpace``:
    the size of the space and the lowest p(predicted class) any of its edits reaches. With
    ``search=False`` it only counts the space (no model call on the edits; p_min is nan)."""
    from itertools import combinations, product

    ids, mask, first, label, allowed = _swap_setup(classifier, text, vocabulary, min_similarity, max_edits)
    edits = [(combo, words) for r in range(1, min(max_edits, len(allowed)) + 1)
             for combo in combinations(sorted(allowed), r)
             for words in product(*(allowed[p].tolist() for p in combo))]
    n_swaps = sum(len(v) for v in allowed.values())
    if not edits:
        return SwapSpace(float(first[label]), 0, 0, float(first[label]), text)
    if not search:
        return SwapSpace(float(first[label]), n_swaps, len(edits), float("nan"), "")
    trials = ids.repeat(len(edits), 1)
    for t, (combo, words) in enumerate(edits):
        trials[t, list(combo)] = torch.tensor(words)
    p = torch.cat([classifier(input_ids=chunk, attention_mask=mask.repeat(len(chunk), 1)).softmax(-1)[:, label]
                   for chunk in trials.split(batch_size)])
    best = int(p.argmin())
    return SwapSpace(float(first[label]), n_swaps, len(edits), float(p[best]), _decode_edit(classifier, trials[best], mask))
