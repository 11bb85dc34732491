"""Helpers for honest attacks and CheckList tests: each test checks a property they must have."""

import numpy as np
import pytest
import torch

from xai_lesson import attacks as A


def test_parse_vader_lexicon_reads_the_mean_valence():
    text = "good\t1.9\t0.9434\t[2, 1, 1, 3, 2, 4, 2, 2, 1, 1]\n\nawful\t-2.0\t0.8\t[-2]\n"
    assert A.parse_vader_lexicon(text) == {"good": 1.9, "awful": -2.0}
    with pytest.raises(ValueError, match="line 1"):
        A.parse_vader_lexicon("good 1.9\n")
    with pytest.raises(ValueError, match="empty"):
        A.parse_vader_lexicon("\n")


def test_vader_lexicon_comes_from_the_checksummed_sdist():
    lexicon = A.vader_lexicon()
    assert len(lexicon) == 7506
    assert lexicon["entertaining"] > 1 and lexicon["stupid"] < -1 and lexicon["worse"] < -1
    assert "film" not in lexicon and "graph" not in lexicon


class FakeTokenizer:
    vocab = {"[CLS]": 0, "film": 1, "good": 2, "movie": 3, "awful": 4, "##s": 5, "ok": 6}

    def get_vocab(self):
        return self.vocab

    def convert_ids_to_tokens(self, ids):
        names = {i: t for t, i in self.vocab.items()}
        return [names[i] for i in ids]


def test_vocabulary_without_drops_banned_words_in_any_case():
    vocabulary = A.vocabulary_without(FakeTokenizer(), {"Good", "awful"})
    assert FakeTokenizer().convert_ids_to_tokens(vocabulary.tolist()) == ["film", "movie"]
    with pytest.raises(TypeError, match="collection of words"):
        A.vocabulary_without(FakeTokenizer(), "good")


def test_cosine_similarity_of_embedding_rows():
    table = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.0, 3.0], [-1.0, 0.0]])
    similarity = A.cosine_similarity(table, [0], [1, 2, 3])
    np.testing.assert_allclose(similarity.numpy(), [[1.0, 0.0, -1.0]], atol=1e-6)


def keyword_predict_proba(texts):
    """p(positive) is 0.9 unless the text contains 'awful' or 'dull' (then 0.1)."""
    p = np.array([0.1 if {"awful", "dull"} & set(t.split()) else 0.9 for t in texts])
    return np.stack([1 - p, p], 1)


def test_ablate_trigger_measures_each_part_and_random_triggers():
    texts = ["a fine film", "good acting", "nice story"]
    ablation = A.ablate_trigger(keyword_predict_proba, texts, 1, ["awful", "graph"],
                                ["river", "stone", "dull", "lamp"], n_random=30, seed=0, drop=["awful"])
    assert ablation.trigger == 1.0 and ablation.words == {"awful": 1.0, "graph": 0.0}
    assert ablation.without == {"awful": 0.0}
    assert len(ablation.random_triggers) == 30 and all(len(r.split()) == 2 for r in ablation.random_triggers)
    has_dull = np.array(["dull" in r.split() for r in ablation.random_triggers])
    assert 0 < has_dull.sum() < 30
    np.testing.assert_array_equal(ablation.random_rates, has_dull.astype(float))
    assert ablation.percentile(1.0) == pytest.approx(1 - has_dull.mean())
    with pytest.raises(ValueError, match="not in the trigger"):
        A.ablate_trigger(keyword_predict_proba, texts, 1, ["awful"], ["river"], drop=["graph"])
    with pytest.raises(ValueError, match="at least 2"):
        A.ablate_trigger(keyword_predict_proba, texts, 1, ["awful"], ["river"], n_random=1)


def test_fill_templates_fills_every_slot_combination():
    texts = A.fill_templates(["The {thing} is {adj}.", "A {adj} one."], thing=["film", "plot"], adj=["good", "bad"])
    assert texts == ["The film is good.", "The film is bad.", "The plot is good.", "The plot is bad.",
                     "A good one.", "A bad one."]


def test_checklist_failures():
    assert list(A.mft_failures(keyword_predict_proba, ["a dull film", "a film"], expected=0)) == [False, True]
    pairs = [("a film", "a dull film"), ("a film", "the film")]
    assert list(A.invariance_failures(keyword_predict_proba, pairs)) == [True, False]
    assert list(A.directional_failures(keyword_predict_proba, pairs, "up")) == [True, False]
    assert list(A.directional_failures(keyword_predict_proba, pairs, "down")) == [False, False]
    assert list(A.directional_failures(keyword_predict_proba, [("a dull film", "a film")], "down")) == [True]
    with pytest.raises(ValueError, match="'up' or 'down'"):
        A.directional_failures(keyword_predict_proba, pairs, "same")


def test_occupation_statistics_load_with_checked_numbers():
    rows = A.load_occupation_statistics()
    words = [row["lesson_word"] for row in rows]
    assert len(words) == len(set(words)) == 11
    assert {"nurse", "plumber", "pilot"} <= set(words) and "teacher" not in words
    assert all(0 <= row["percent_women"] <= 100 and row["year"] == 2022 for row in rows)
    by_word = {row["lesson_word"]: row for row in rows}
    assert by_word["nurse"]["bls_occupation"] == "Registered nurses"
    assert by_word["plumber"]["percent_women"] < 5 < 80 < by_word["secretary"]["percent_women"]


GOOD = ("lesson_word,bls_occupation,percent_women,total_employed_thousands,year,source_url\n"
        "nurse,Registered nurses,87.9,3363,2022,https://www.bls.gov/cps/aa2022/cpsaat11.htm\n")


def test_bad_occupation_statistics_say_what_to_fix():
    assert A.parse_occupation_statistics(GOOD)[0]["percent_women"] == 87.9
    with pytest.raises(ValueError, match="must have the header.*git checkout"):
        A.parse_occupation_statistics(GOOD.replace("percent_women", "women"))
    with pytest.raises(ValueError, match="line 2 .*needs numbers"):
        A.parse_occupation_statistics(GOOD.replace("87.9", "87,9%"))
    with pytest.raises(ValueError, match="line 2 .*0-100"):
        A.parse_occupation_statistics(GOOD.replace("87.9", "879"))
    with pytest.raises(ValueError, match="line 3 .*repeated"):
        A.parse_occupation_statistics(GOOD + GOOD.splitlines()[1] + "\n")
    with pytest.raises(ValueError, match="no rows"):
        A.parse_occupation_statistics(GOOD.splitlines()[0] + "\n")


def test_a_changed_occupation_file_fails_its_checksum(tmp_path, monkeypatch):
    from xai_lesson import data

    real = data.data_dir()
    (tmp_path / "occupations").mkdir()
    (tmp_path / data.MANIFEST).write_text((real / data.MANIFEST).read_text())
    changed = (real / A.OCCUPATIONS_CSV).read_text().replace("87.9", "12.0")
    (tmp_path / A.OCCUPATIONS_CSV).write_text(changed)
    monkeypatch.setenv("XAI_LESSON_DATA", str(tmp_path))
    with pytest.raises(data.DataChecksumError, match="git checkout -- data/occupations"):
        A.load_occupation_statistics()


def test_flip_rates_equal_flip_rate_one_prefix_at_a_time():
    from xai_lesson.perturbation import flip_rate

    def predict_proba(texts):  # "bad" anywhere flips to class 0
        p = np.array([0.9 if "bad" in t else 0.2 for t in texts])
        return np.stack([p, 1 - p], 1)

    texts = ["a fine film", "a good cast", "bad acting"]
    prefixes = ["", "bad", "very", "so bad"]
    assert A.flip_rates(predict_proba, texts, 1, prefixes) == \
        [flip_rate(predict_proba, texts, 1, p) for p in prefixes] == [1 / 3, 1.0, 1 / 3, 1.0]
    with pytest.raises(TypeError, match="wrap it"):
        A.flip_rates(predict_proba, texts, 1, "bad")


def _bad_flips(texts):  # "bad" anywhere flips to class 0, "dull" flips half the texts
    p = np.array([0.9 if "bad" in t else 0.6 if ("dull" in t and len(t) % 2) else 0.2 for t in texts])
    return np.stack([p, 1 - p], 1)


def test_ablate_trigger_draws_random_triggers_of_each_length():
    texts = ["a fine film", "a good cast", "lovely acting", "great fun"]
    words = ["dull", "film", "cast", "plot", "bad"]
    ablation = A.ablate_trigger(_bad_flips, texts, 1, ["bad", "dull"], words, n_random=6, seed=1, drop=["bad"],
                                random_lengths=[1, 2])
    assert set(ablation.random_by_length) == {1, 2}
    assert all(len(r) == 6 for r in ablation.random_by_length.values())
    assert np.array_equal(ablation.random_rates, ablation.random_by_length[2])
    assert all(len(t.split()) == 2 for t in ablation.random_triggers)
    assert ablation.words["bad"] == 1.0 and ablation.trigger == 1.0
    assert ablation.percentile(0.5, length=1) == np.mean(ablation.random_by_length[1] < 0.5)
    default = A.ablate_trigger(_bad_flips, texts, 1, ["bad", "dull"], words, n_random=6, seed=1)
    assert set(default.random_by_length) == {2}
    with pytest.raises(ValueError, match="random_lengths"):
        A.ablate_trigger(_bad_flips, texts, 1, ["bad"], words, random_lengths=[1, 1])


def test_directional_changes_give_the_sign_the_failures_hide():
    pairs = [("a fine film", "a fine film bad"), ("a fine film", "a dull film")]
    change = A.directional_changes(_bad_flips, pairs)
    assert change[0] == pytest.approx(-0.7)
    assert np.array_equal(A.directional_failures(_bad_flips, pairs, "up"), change < -0.1)
    # a move the wrong way within the tolerance passes the test, but its sign is still negative
    assert not A.directional_failures(_bad_flips, [("a fine film", "a fine film")], "down", tolerance=0.1)[0]


class TinyClassifier(torch.nn.Module):
    """Mean of word embeddings -> 2 logits; 'bad' and 'awful' push to class 0."""

    def __init__(self):
        super().__init__()
        from transformers import BertTokenizerFast
        import tempfile, os
        self.words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "good", "fine", "film", "movie", "bad", "awful", "plot", "cast"]
        folder = tempfile.mkdtemp()
        with open(os.path.join(folder, "vocab.txt"), "w") as f:
            f.write("\n".join(self.words))
        self.tokenizer = BertTokenizerFast(os.path.join(folder, "vocab.txt"))
        table = torch.zeros(len(self.words), 3)
        for w, row in {"good": [1, 0, 0], "fine": [1, .2, 0], "film": [0, 1, 0], "movie": [0, 1, .1],
                       "bad": [-1, 0, 0], "awful": [-1, 0, .2], "plot": [0, 0, 1], "cast": [0, .1, 1]}.items():
            table[self.words.index(w)] = torch.tensor(row)
        self.embedding = torch.nn.Embedding.from_pretrained(table)
        self.encoder = type("E", (), {"get_input_embeddings": lambda _: self.embedding})()
        self.labels = ["negative", "positive"]

    def encode(self, texts):
        batch = self.tokenizer(texts, padding=True, return_tensors="pt")
        return batch["input_ids"], batch["attention_mask"]

    def word_embeddings(self, ids):
        return self.embedding(ids)

    def forward(self, input_ids=None, attention_mask=None, inputs_embeds=None):
        e = self.embedding(input_ids) if inputs_embeds is None else inputs_embeds
        x = (e * attention_mask[..., None]).sum(1) / attention_mask.sum(1, keepdim=True)
        return torch.stack([-4 * x[:, 0], 4 * x[:, 0]], -1)


def test_random_swaps_respect_the_similarity_constraint():
    classifier = TinyClassifier()
    vocabulary = torch.arange(4, len(classifier.words))
    ids = classifier.tokenizer.convert_tokens_to_ids
    p0, after = A.random_swaps(classifier, "good film", vocabulary, min_similarity=0.95, n_trials=8, seed=0)
    # 'good' may only become 'fine' (cosine 0.98) and 'film' only 'movie' (0.995): the prediction barely moves
    assert len(after) == 8 and p0 > 0.5 and np.all(after > 0.5)
    _, free = A.random_swaps(classifier, "good film", vocabulary, n_trials=50, seed=0)
    assert free.min() < 0.5, "without the constraint some random swap brings in 'bad' or 'awful'"
    again = A.random_swaps(classifier, "good film", vocabulary, n_trials=50, seed=0)[1]
    assert np.array_equal(free, again)
    _, none = A.random_swaps(classifier, "good film", torch.tensor([ids("plot")]), min_similarity=0.9)
    assert len(none) == 0, "no allowed word at any position: no trial"


def test_random_swaps_can_return_the_edited_texts():
    classifier = TinyClassifier()
    vocabulary = torch.arange(4, len(classifier.words))
    p0, after, texts = A.random_swaps(classifier, "good film", vocabulary, n_trials=12, seed=0, return_texts=True)
    assert len(texts) == 12 and all(t != "good film" for t in texts)
    # each text is the edit that p was measured on
    for text, p in zip(texts, after):
        ids, mask = classifier.encode([text])
        assert float(classifier(input_ids=ids, attention_mask=mask).softmax(-1)[0, 1]) == pytest.approx(p, abs=1e-6)
    assert np.array_equal(after, A.random_swaps(classifier, "good film", vocabulary, n_trials=12, seed=0)[1])
    _, none, no_texts = A.random_swaps(classifier, "good film", torch.tensor([classifier.tokenizer.convert_tokens_to_ids("plot")]),
                                       min_similarity=0.9, return_texts=True)
    assert len(none) == 0 and no_texts == []


def test_exhaustive_swaps_searches_every_allowed_edit():
    classifier = TinyClassifier()
    vocabulary = torch.arange(4, len(classifier.words))
    space = A.exhaustive_swaps(classifier, "good film", vocabulary, min_similarity=0.95)
    # 'good' may only become 'fine' and 'film' only 'movie': 2 single swaps and 1 double swap
    assert (space.n_swaps, space.n_edits) == (2, 3) and space.p_min > 0.5
    free = A.exhaustive_swaps(classifier, "good film", vocabulary)
    _, after = A.random_swaps(classifier, "good film", vocabulary, n_trials=50, seed=0)
    assert free.p_min <= after.min() + 1e-6, "no random edit beats the exhaustive search"
    ids, mask = classifier.encode([free.best_text])
    assert float(classifier(input_ids=ids, attention_mask=mask).softmax(-1)[0, 1]) == pytest.approx(free.p_min, abs=1e-6)
    none = A.exhaustive_swaps(classifier, "good film", torch.tensor([classifier.tokenizer.convert_tokens_to_ids("plot")]),
                              min_similarity=0.9)
    assert (none.n_edits, none.best_text) == (0, "good film") and none.p_min == none.p_before
    counted = A.exhaustive_swaps(classifier, "good film", vocabulary, search=False)
    assert (counted.n_swaps, counted.n_edits) == (free.n_swaps, free.n_edits) and np.isnan(counted.p_min)
