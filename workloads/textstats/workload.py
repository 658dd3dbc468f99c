"""Benchmark: analyse a synthetic corpus end to end (SWE-fficiency convention: setup() then workload())."""
import timeit

from textstats import (content_tokens, generate_corpus, near_duplicate_groups, tfidf_keywords, top_ngrams,
                       word_frequencies)

CORPUS = None


def setup():
    global CORPUS
    CORPUS = generate_corpus(n_docs=150, seed=2024)


def workload():
    docs = [content_tokens(text) for text in CORPUS.texts()]
    frequencies = word_frequencies(docs)
    keywords = tfidf_keywords(docs, k=5)
    return {
        "documents": len(docs),
        "tokens": sum(frequencies.values()),
        "vocabulary": len(frequencies),
        "top_words": frequencies.most_common(10),
        "top_bigrams": top_ngrams(docs, 2, 10),
        "top_trigrams": top_ngrams(docs, 3, 5),
        "keywords": {str(i): doc_keywords for i, doc_keywords in enumerate(keywords) if i % 4 == 0},
        "near_duplicates": near_duplicate_groups(docs, threshold=0.5),
    }


if __name__ == "__main__":
    runtimes = timeit.repeat(workload, setup=setup, number=1, repeat=7)
    print(f"mean {sum(runtimes) / len(runtimes) * 1e3:.1f} ms, min {min(runtimes) * 1e3:.1f} ms")
