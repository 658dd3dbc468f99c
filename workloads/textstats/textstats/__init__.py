"""textstats: small pure-Python text analytics."""
from .corpus import Corpus, Document, generate_corpus
from .stats import (document_frequencies, near_duplicate_groups, ngrams, tfidf_keywords, top_keywords, top_ngrams,
                    word_frequencies)
from .tokenize import content_tokens, normalize_token, remove_stopwords, tokenize

__version__ = "0.3.0"
__all__ = [
    "Corpus", "Document", "generate_corpus",
    "document_frequencies", "near_duplicate_groups", "ngrams", "tfidf_keywords", "top_keywords", "top_ngrams",
    "word_frequencies",
    "content_tokens", "normalize_token", "remove_stopwords", "tokenize",
]
