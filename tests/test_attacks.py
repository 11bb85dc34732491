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
