"""Statistics over tokenized documents: frequencies, n-grams, TF-IDF keywords and near-duplicates.

A document is a list of tokens, as returned by `textstats.tokenize.content_tokens`.
"""
import math
from collections import Counter


def word_frequencies(docs):
    """Counter of every token over all documents."""
    counts = Counter()
    for doc in docs:
        counts.update(doc)
    return counts


def ngrams(tokens, n):
    """The n-grams of `tokens`, in order, as tuples; empty when there are fewer than `n` tokens."""
    if n < 1:
        raise ValueError("n must be at least 1")
    grams = []
    window = []
    for token in tokens:
        window = window + [token]
        if len(window) > n:
            window = window[1:]
        if len(window) == n:
            grams.append(tuple(window))
    return grams


def top_ngrams(docs, n, k):
    """The `k` most frequent n-grams over all documents as (ngram, count), ties broken by the n-gram."""
    counts = Counter()
    for doc in docs:
        counts.update(ngrams(doc, n))
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:k]


def document_frequencies(docs):
    """For each term, the number of documents it appears in; keys in sorted order."""
    vocabulary = sorted({term for doc in docs for term in doc})
    return {term: sum(1 for doc in docs if term in doc) for term in vocabulary}


def idf(df, n_docs):
    """Smoothed inverse document frequency, always positive."""
    return math.log((1 + n_docs) / (1 + df)) + 1.0


def top_keywords(scores, k):
    """The `k` highest-scoring (term, score) pairs of a {term: score} mapping, ties broken alphabetically."""
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))[:k]


def tfidf_keywords(docs, k=5):
    """For each document, its `k` best keywords by TF-IDF as (term, score) pairs."""
    df = document_frequencies(docs)
    keywords = []
    for doc in docs:
        if not doc:
            keywords.append([])
            continue
        counts = Counter(doc)
        scores = {term: count / len(doc) * idf(df[term], len(docs)) for term, count in counts.items()}
        keywords.append(top_keywords(scores, k))
    return keywords


def shingles(tokens, size=3):
    """The set of `size`-token shingles of a document; a shorter document is its own single shingle."""
    if len(tokens) <= size:
        return {tuple(tokens)}
    return {tuple(tokens[i:i + size]) for i in range(len(tokens) - size + 1)}


def jaccard(a, b):
    """Jaccard similarity of two sets; two empty sets are identical."""
    if not a and not b:
        return 1.0
    common = len(a & b)
    return common / (len(a) + len(b) - common)


def near_duplicate_groups(docs, threshold=0.5, size=3):
    """Groups of near-duplicate documents, as sorted lists of indices into `docs`.

    Two documents are near-duplicates when the Jaccard similarity of their shingle sets is at least `threshold`;
    groups are the connected components of that relation. Only groups of two or more are returned, sorted.
    """
    parent = list(range(len(docs)))

    def root(i):
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i, doc in enumerate(docs):
        mine = shingles(doc, size)
        for j in range(i + 1, len(docs)):
            if jaccard(mine, shingles(docs[j], size)) >= threshold:
                parent[root(j)] = root(i)
    groups = {}
    for i in range(len(docs)):
        groups.setdefault(root(i), []).append(i)
    return sorted(group for group in groups.values() if len(group) > 1)
