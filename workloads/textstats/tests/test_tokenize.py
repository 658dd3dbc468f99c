import pytest

from textstats.tokenize import content_tokens, normalize_token, remove_stopwords, stopword_list, tokenize


@pytest.mark.parametrize("raw, expected", [
    ("Hello", "hello"),
    ("world!", "world"),
    ('"Quoted,"', "quoted"),
    ("(parenthesised)", "parenthesised"),
    ("…ellipsis…", "ellipsis"),
    ("don't", "don't"),
    ("'tis", "tis"),
    ("e-mail.", "e-mail"),
    ("!!!", ""),
])
def test_normalize_token(raw, expected):
    assert normalize_token(raw) == expected


def test_normalize_token_folds_compatibility_characters():
    assert normalize_token("ﬁnal") == "final"
    assert normalize_token("ＡＢＣ") == "abc"


def test_tokenize_splits_on_any_whitespace_and_drops_bare_punctuation():
    assert tokenize("  The cat\tsat -- on\nthe mat. ") == ["the", "cat", "sat", "on", "the", "mat"]


def test_tokenize_keeps_inner_hyphens_and_apostrophes():
    assert tokenize("State-of-the-art isn't cheap.") == ["state-of-the-art", "isn't", "cheap"]


def test_tokenize_empty_text():
    assert tokenize("") == []
    assert tokenize(" ... ") == []


def test_stopword_list_is_lower_case_and_unique():
    words = stopword_list()
    assert "the" in words and "yourselves" in words
    assert len(words) == len(set(words))
    assert all(word == word.lower() for word in words)


def test_remove_stopwords_keeps_order_and_duplicates():
    assert remove_stopwords(["the", "cat", "and", "the", "cat"]) == ["cat", "cat"]


def test_remove_stopwords_with_extra_words_normalises_them():
    assert remove_stopwords(["the", "cat", "sat"], extra=["Cat!"]) == ["sat"]


def test_content_tokens_drops_stopwords_and_numbers_but_not_words_with_digits():
    assert content_tokens("The 3 cats ate 12 mp3 files, and they were happy!") == ["cats", "ate", "mp3", "files",
                                                                                   "happy"]
