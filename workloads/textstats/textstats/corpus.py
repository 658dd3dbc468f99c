"""Documents and a deterministic synthetic corpus generator (for tests and benchmarks)."""
import random
from dataclasses import dataclass

from .tokenize import stopword_list

_SYLLABLES = ("ka", "lo", "mi", "ren", "ta", "vo", "sel", "dra", "qui", "nor", "pe", "lin", "zu", "mar", "tes",
              "an", "fi", "gre", "hal", "ux", "bre", "cor", "dim", "sa", "tho", "vel", "nu", "rak", "eb", "is")
_TOPICS = ("sports", "finance", "science", "travel", "politics", "food", "music", "health")
_CLOSINGS = (".", ".", ".", "!", "?")


@dataclass(frozen=True)
class Document:
    doc_id: int
    topic: str
    text: str


class Corpus:
    """An ordered collection of documents."""

    def __init__(self, documents):
        self.documents = list(documents)

    def __len__(self):
        return len(self.documents)

    def __iter__(self):
        return iter(self.documents)

    def texts(self):
        """The documents' texts, in order."""
        return [doc.text for doc in self.documents]

    def by_topic(self):
        """{topic: [documents]} in order of first appearance."""
        groups = {}
        for doc in self.documents:
            groups.setdefault(doc.topic, []).append(doc)
        return groups


def make_vocabulary(rng, size):
    """`size` distinct pseudo-words of two or three syllables, none of them a stopword."""
    stopwords = set(stopword_list())
    words = []
    seen = set()
    while len(words) < size:
        word = "".join(rng.choice(_SYLLABLES) for _ in range(rng.choice((2, 2, 3))))
        if word not in seen and word not in stopwords:
            seen.add(word)
            words.append(word)
    return words


def _sentence(rng, words, weights, stopwords):
    """One sentence: topic words (Zipf-distributed) mixed with stopwords, commas and the odd number."""
    length = rng.randint(6, 12)
    parts = []
    for position in range(length):
        if rng.random() < 0.4:
            part = rng.choice(stopwords)
        elif rng.random() < 0.04:
            part = str(rng.randint(2, 99))
        else:
            part = rng.choices(words, cum_weights=weights)[0]
        if position < length - 1 and rng.random() < 0.08:
            part += ","
        parts.append(part)
    parts[0] = parts[0].capitalize()
    if rng.random() < 0.1:
        parts[-1] = '"' + parts[-1] + '"'
    return " ".join(parts) + rng.choice(_CLOSINGS)


def _near_copy(rng, text, vocabulary):
    """`text` with one to three small edits: a word replaced, a word dropped, or a word upper-cased."""
    parts = text.split()
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(parts))
        edit = rng.random()
        if edit < 0.4:
            parts[i] = rng.choice(vocabulary)
        elif edit < 0.7 and len(parts) > 4:
            del parts[i]
        else:
            parts[i] = parts[i].upper()
    return " ".join(parts)


def generate_corpus(n_docs=200, seed=0, vocabulary_size=900, topic_size=220, duplicate_rate=0.15):
    """A reproducible corpus of `n_docs` short documents over a few topics.

    Each topic draws from its own slice of a shared pseudo-word vocabulary with Zipf-like frequencies; about
    `duplicate_rate` of the documents are lightly edited copies of an earlier document.
    """
    rng = random.Random(seed)
    vocabulary = make_vocabulary(rng, vocabulary_size)
    stopwords = stopword_list()
    topics = {}
    for topic in _TOPICS:
        words = rng.sample(vocabulary, topic_size)
        cumulative, total = [], 0.0
        for rank in range(topic_size):
            total += 1.0 / (rank + 1)
            cumulative.append(total)
        topics[topic] = (words, cumulative)
    documents = []
    for doc_id in range(n_docs):
        if documents and rng.random() < duplicate_rate:
            original = rng.choice(documents)
            documents.append(Document(doc_id, original.topic, _near_copy(rng, original.text, vocabulary)))
            continue
        topic = rng.choice(_TOPICS)
        words, weights = topics[topic]
        text = " ".join(_sentence(rng, words, weights, stopwords) for _ in range(rng.randint(2, 4)))
        documents.append(Document(doc_id, topic, text))
    return Corpus(documents)
