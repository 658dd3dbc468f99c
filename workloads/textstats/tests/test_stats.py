import math
from collections import Counter

import pytest

from textstats.stats import (document_frequencies, idf, jaccard, near_duplicate_groups, ngrams, shingles,
                             tfidf_keywords, top_keywords, top_ngrams, word_frequencies)


def test_word_frequencies_counts_over_all_documents():
    assert word_frequencies([["a", "b"], ["b", "c", "b"], []]) == Counter({"b": 3, "a": 1, "c": 1})


@pytest.mark.parametrize("n, expected", [
    (1, [("a",), ("b",), ("c",), ("d",)]),
    (2, [("a", "b"), ("b", "c"), ("c", "d")]),
    (3, [("a", "b", "c"), ("b", "c", "d")]),
    (4, [("a", "b", "c", "d")]),
    (5, []),
])
def test_ngrams(n, expected):
    assert ngrams(["a", "b", "c", "d"], n) == expected


def test_ngrams_rejects_non_positive_n():
    with pytest.raises(ValueError):
        ngrams(["a"], 0)


def test_top_ngrams_orders_by_count_then_ngram():
    docs = [["b", "a"], ["a", "b"], ["c", "d", "c", "d"]]
    assert top_ngrams(docs, 2, 3) == [(("c", "d"), 2), (("a", "b"), 1), (("b", "a"), 1)]
    assert top_ngrams(docs, 2, 1) == [(("c", "d"), 2)]


def test_top_ngrams_does_not_cross_document_boundaries():
    assert top_ngrams([["a", "b"], ["c", "d"]], 2, 10) == [(("a", "b"), 1), (("c", "d"), 1)]


def test_document_frequencies_count_each_document_once():
    df = document_frequencies([["a", "a", "b"], ["b"], ["c", "b"]])
    assert df == {"a": 1, "b": 3, "c": 1}
    assert list(df) == ["a", "b", "c"]


def test_idf_decreases_with_document_frequency_and_stays_positive():
    assert idf(1, 10) > idf(5, 10) > idf(10, 10) == pytest.approx(1.0)
    assert idf(0, 0) == pytest.approx(1.0)


def test_top_keywords_highest_scores_first():
    scores = {"alpha": 0.2, "beta": 0.9, "gamma": 0.5, "delta": 0.1}
    assert top_keywords(scores, 3) == [("beta", 0.9), ("gamma", 0.5), ("alpha", 0.2)]
    assert top_keywords(scores, 10)[-1] == ("delta", 0.1)


def test_tfidf_keywords_prefers_rare_frequent_terms():
    docs = [["apple", "apple", "pear", "common"], ["pear", "common"], ["common", "plum"]]
    keywords = tfidf_keywords(docs, k=2)
    assert [term for term, _ in keywords[0]] == ["apple", "pear"]
    assert keywords[0][0][1] == pytest.approx(2 / 4 * (math.log(4 / 2) + 1))
    assert [term for term, _ in keywords[2]] == ["plum", "common"]


def test_tfidf_keywords_handles_empty_documents():
    assert tfidf_keywords([[], ["a"]], k=3) == [[], [("a", pytest.approx(math.log(3 / 2) + 1))]]


def test_shingles():
    assert shingles(["a", "b", "c", "d"], 3) == {("a", "b", "c"), ("b", "c", "d")}
    assert shingles(["a", "b"], 3) == {("a", "b")}


def test_jaccard():
    assert jaccard({1, 2, 3}, {2, 3, 4}) == pytest.approx(0.5)
    assert jaccard(set(), set()) == 1.0
    assert jaccard({1}, set()) == 0.0


def test_near_duplicate_groups_links_transitively():
    base = "the quick brown fox jumps over the lazy dog today".split()
    edited = base[:-1] + ["tomorrow"]
    edited_twice = edited[:-2] + ["cat", "tomorrow"]
    unrelated = "completely different words make up this other sentence here".split()
    docs = [base, unrelated, edited, edited_twice, list(unrelated)]
    assert near_duplicate_groups(docs, threshold=0.6) == [[0, 2, 3], [1, 4]]


def test_near_duplicate_groups_threshold_one_needs_identical_shingles():
    docs = [["a", "b", "c", "d"], ["a", "b", "c", "e"], ["a", "b", "c", "d"]]
    assert near_duplicate_groups(docs, threshold=1.0) == [[0, 2]]
    assert near_duplicate_groups([], threshold=0.5) == []
