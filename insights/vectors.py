"""Sentence vectors for grouping insights, offline: nothing is downloaded, at install or at run time.

Two methods, chosen by name:

``wordllama``  the 256-dimension ``l2_supercat`` token embeddings that ship *inside* the ``wordllama``
               wheel (16 MB), mean-pooled per text. ``WordLlama.load(disable_download=True)`` alone looks
               for the packaged tokenizer under ``tokenizer/`` while the wheel holds it under
               ``tokenizers/``, so :func:`wordllama_model` copies that one JSON file into a temporary
               folder and loads with ``cache_dir`` pointing there and downloads disabled.
``tfidf``      scikit-learn's TF-IDF over character 3- to 5-grams within words (so "salary" and
               "salaries" share most features), sublinear term frequency, fitted on the texts given.
               Lexical only, but needs no model at all.

``auto`` (the default) is ``wordllama`` when it is installed, else ``tfidf``; the method actually used is
returned with the vectors and recorded in every theme. Rows are L2-normalised, so a dot product is the
cosine similarity. The same texts give the same vectors (no sampling, no randomness). The two methods'
similarities live on different scales, so each has its own default threshold for themes
(:data:`DEFAULT_MIN_SIMILARITY`; chosen on the labelled set ``evals/themes``, see its README).
"""

from __future__ import annotations

import functools
import importlib.util
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._optional import require
from .errors import ConfigError

METHODS = ("auto", "wordllama", "tfidf")
WORDLLAMA_CONFIG = "l2_supercat"
WORDLLAMA_DIM = 256
EXTRA = "themes"
#: Default least similarity of two members of a theme, per method.
DEFAULT_MIN_SIMILARITY = {"wordllama": 0.25, "tfidf": 0.08}


def resolve_method(method: str = "auto") -> str:
    """The method ``method`` stands for on this installation (``auto`` → ``wordllama`` or ``tfidf``)."""
    if method not in METHODS:
        raise ConfigError(f"unknown vector method {method!r}; choose one of {', '.join(METHODS)}")
    if method == "auto":
        return "wordllama" if importlib.util.find_spec("wordllama") is not None else "tfidf"
    return method


@functools.lru_cache(maxsize=1)
def wordllama_model() -> Any:
    """The packaged WordLlama model, loaded with downloads disabled (see the module docstring)."""
    wordllama = require("wordllama", EXTRA, purpose="insights themes")
    package = Path(str(wordllama.__file__)).parent
    tokenizers = sorted((package / "tokenizers").glob(f"{WORDLLAMA_CONFIG}*.json"))
    if not tokenizers:
        raise ConfigError(f"the installed wordllama has no packaged tokenizer under {package / 'tokenizers'}")
    with tempfile.TemporaryDirectory(prefix="insights-wordllama-") as tmp:
        (Path(tmp) / "tokenizers").mkdir()
        for path in tokenizers:
            shutil.copyfile(path, Path(tmp) / "tokenizers" / path.name)
        try:
            return wordllama.WordLlama.load(
                config=WORDLLAMA_CONFIG, dim=WORDLLAMA_DIM, cache_dir=tmp, disable_download=True
            )
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(f"cannot load the packaged wordllama model offline: {exc}") from exc


def embed(texts: Sequence[str], method: str = "auto") -> tuple[Any, str]:
    """Vectors for ``texts``, one L2-normalised row each, and the method used.

    Args:
        texts: the texts, in the order their rows should come.
        method: ``auto``, ``wordllama`` or ``tfidf``.

    Returns:
        ``(matrix, method)``: a dense ``float32`` numpy array (wordllama) or a CSR sparse matrix (tfidf)
        with one row per text.

    Raises:
        ConfigError: an unknown method, or the ``themes`` extra is not installed.
    """
    np = require("numpy", EXTRA, purpose="insights themes")
    used = resolve_method(method)
    if not texts:
        return np.zeros((0, WORDLLAMA_DIM), dtype=np.float32), used
    if used == "wordllama":
        model = wordllama_model()
        # Sorting by length keeps each batch's padding short; rows are put back in order afterwards.
        order = sorted(range(len(texts)), key=lambda i: (len(texts[i]), i))
        vectors = np.asarray(model.embed([texts[i] for i in order], norm=True), dtype=np.float32)
        vectors = np.nan_to_num(vectors, nan=0.0)  # a text with no known token has a zero vector
        out = np.empty_like(vectors)
        out[np.asarray(order)] = vectors
        return out, used
    text_module = require("sklearn.feature_extraction.text", EXTRA, purpose="insights themes")
    vectorizer = text_module.TfidfVectorizer(
        analyzer="char_wb", ngram_range=(3, 5), lowercase=True, sublinear_tf=True, dtype=np.float32
    )
    try:
        matrix = vectorizer.fit_transform(list(texts))
    except ValueError:  # only stop words: no vocabulary
        return np.zeros((len(texts), 1), dtype=np.float32), used
    return matrix.tocsr(), used
