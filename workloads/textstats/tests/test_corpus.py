import random

from textstats.corpus import Corpus, Document, generate_corpus, make_vocabulary
from textstats.stats import near_duplicate_groups
from textstats.tokenize import content_tokens, stopword_list


def test_generate_corpus_is_reproducible():
    assert generate_corpus(30, seed=7).texts() == generate_corpus(30, seed=7).texts()
    assert generate_corpus(30, seed=7).texts() != generate_corpus(30, seed=8).texts()


def test_generate_corpus_documents_are_numbered_and_non_empty():
    corpus = generate_corpus(25, seed=1)
    assert len(corpus) == 25
    assert [doc.doc_id for doc in corpus] == list(range(25))
    assert all(content_tokens(doc.text) for doc in corpus)


def test_generated_corpus_contains_near_duplicates():
    corpus = generate_corpus(60, seed=3, duplicate_rate=0.3)
    docs = [content_tokens(text) for text in corpus.texts()]
    assert near_duplicate_groups(docs, threshold=0.5)
    assert not near_duplicate_groups(docs[:1], threshold=0.5)


def test_make_vocabulary_is_distinct_and_has_no_stopwords():
    words = make_vocabulary(random.Random(0), 300)
    assert len(set(words)) == 300
    assert not set(words) & set(stopword_list())


def test_corpus_by_topic_keeps_order():
    docs = [Document(0, "a", "x"), Document(1, "b", "y"), Document(2, "a", "z")]
    assert Corpus(docs).by_topic() == {"a": [docs[0], docs[2]], "b": [docs[1]]}
    assert Corpus(docs).texts() == ["x", "y", "z"]
