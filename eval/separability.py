"""How separable the languages are in each layer's representations of parallel sentences.

Sentence i is the same content in every language, so whatever separates languages in
these representations is language, not topic. Three measures per layer:

* silhouette: sklearn's silhouette score (cosine distance) of the language clusters,
  in [-1, 1]; high when sentences sit closer to their own language than to others.
* probe accuracy: a logistic-regression language-ID probe, scored on *held-out
  sentences* (GroupKFold over sentence ids: no translation of a test sentence is ever in
  the training folds), so it measures language identity rather than memorised content.
* language-specific dimensions: a hidden dimension is language-specific when language
  explains at least ``threshold`` of its variance across all sentences, i.e. its one-way
  ANOVA effect size eta² = SS_between-languages / SS_total >= threshold (default 0.5:
  language is the majority source of that dimension's variation). eta² comes from
  sklearn's ``f_classif`` F statistic: eta² = F(k-1) / (F(k-1) + N - k). Under no language
  effect E[eta²] = (k-1)/(N-1), reported as ``eta2_null`` for scale. The count is also
  given as a fraction of the hidden size so models of different width compare.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence

import numpy as np
from sklearn.feature_selection import f_classif
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import silhouette_score
from sklearn.model_selection import GroupKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

DEFAULT_THRESHOLD = 0.5


def parallel_dataset(
    parallel: Mapping[str, Sequence[str]],
) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Flatten {language: sentences} into (texts, language labels, sentence ids)."""
    lengths = {len(sentences) for sentences in parallel.values()}
    if len(parallel) < 2 or len(lengths) != 1:
        raise ValueError("need at least two languages with the same number of parallel sentences")
    texts, labels, ids = [], [], []
    for language, sentences in parallel.items():
        texts.extend(sentences)
        labels.extend([language] * len(sentences))
        ids.extend(range(len(sentences)))
    return texts, np.array(labels), np.array(ids)


def eta_squared(features: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-dimension fraction of variance explained by the label (0 for constant dims)."""
    k, n = len(np.unique(labels)), len(labels)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        # Constant dimensions are expected (and scored 0 below); sklearn warns about them.
        warnings.filterwarnings("ignore", message="Features .* are constant", category=UserWarning)
        f_stat, _ = f_classif(features, labels)
        between = f_stat * (k - 1)
        eta2 = between / (between + (n - k))
    # A dimension that is constant within every language has infinite F: eta² = 1.
    eta2 = np.where(np.isposinf(f_stat), 1.0, eta2)
    return np.nan_to_num(eta2, nan=0.0)


def layer_separability(
    features: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
) -> dict:
    eta2 = eta_squared(features, labels)
    folds = min(5, len(np.unique(groups)))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    accuracy = cross_val_score(
        probe, features, labels, groups=groups, cv=GroupKFold(n_splits=folds)
    )
    dims = int(np.count_nonzero(eta2 >= threshold))
    return {
        "silhouette": float(silhouette_score(features, labels, metric="cosine")),
        "probe_accuracy": float(accuracy.mean()),
        "language_specific_dims": dims,
        "language_specific_fraction": dims / features.shape[1],
        "mean_eta2": float(eta2.mean()),
    }


def separability_by_layer(
    representations: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
) -> dict:
    """Measures for every layer of ``representations`` (layers, sentences, hidden)."""
    k, n = len(np.unique(labels)), len(labels)
    return {
        "languages": sorted(np.unique(labels).tolist()),
        "n_sentences": int(n),
        "hidden_size": int(representations.shape[2]),
        "threshold": threshold,
        "eta2_null": (k - 1) / (n - 1),
        "probe_chance": 1.0 / k,
        "layers": [
            {
                "layer": layer,
                **layer_separability(representations[layer], labels, groups, threshold, seed),
            }
            for layer in range(representations.shape[0])
        ],
    }
