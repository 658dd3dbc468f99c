"""Tokenizing and normalising raw text."""
import re
import string
import unicodedata

# Characters trimmed from both ends of a token; apostrophes and hyphens inside words survive.
EDGE_PUNCTUATION = string.punctuation + "“”‘’«»…–—"

_STOPWORDS_TEXT = """
a about above after again against all am an and any are as at be because been before being below between both but by
can could did do does doing down during each few for from further had has have having he her here hers herself him
himself his how i if in into is it its itself just let me more most my myself no nor not now of off on once only or
other our ours ourselves out over own same she should so some such than that the their theirs them themselves then
there these they this those through to too under until up very was we were what when where which while who whom why
will with would you your yours yourself yourselves also may might must shall upon us yet
"""


def normalize_token(token):
    """Return `token` in canonical form: NFKC-normalised, lower-cased, surrounding punctuation removed.

    Punctuation inside the token is kept, so "don't" and "state-of-the-art" stay whole.
    """
    token = unicodedata.normalize("NFKC", token).lower()
    edge = "[" + re.escape(EDGE_PUNCTUATION) + "]+"
    return re.sub("^" + edge + "|" + edge + "$", "", token)


def tokenize(text):
    """Split `text` on whitespace and normalise each piece; pieces that were only punctuation are dropped."""
    tokens = []
    for raw in text.split():
        token = normalize_token(raw)
        if token:
            tokens.append(token)
    return tokens


def stopword_list():
    """The built-in English stopwords, in the order they are listed."""
    return [word.strip() for word in _STOPWORDS_TEXT.split() if word.strip()]


def remove_stopwords(tokens, extra=()):
    """Return `tokens` without stopwords (the built-in ones plus `extra`), in their original order."""
    stopwords = stopword_list() + [normalize_token(word) for word in extra]
    return [token for token in tokens if token not in stopwords]


def content_tokens(text, extra_stopwords=()):
    """Tokens of `text` that carry meaning: normalised, stopwords and bare numbers removed."""
    tokens = remove_stopwords(tokenize(text), extra_stopwords)
    return [token for token in tokens if not token.isdigit()]
