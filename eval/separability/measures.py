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
from sklearn.metrics import silhouette_samples
from sklearn.model_selection import GroupKFold, cross_val_predict
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from eval.comparing.bootstrap import resample_means, significance, unit_rng

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
    bootstrap_iterations: int = 0,
) -> dict:
    """The three measures of one layer. Silhouette and probe accuracy are means over the
    items (sentence x language), so each also comes per sentence (``per_sentence``: the mean
    over that sentence's translations); with ``bootstrap_iterations`` > 0 their 95 %
    intervals resample sentences (all translations of a sentence together), which is how
    much they would move on another sample of sentences of the same size."""
    eta2 = eta_squared(features, labels)
    folds = min(5, len(np.unique(groups)))
    probe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    # Every item is predicted once, by the fold that held its sentence out.
    predicted = cross_val_predict(
        probe, features, labels, groups=groups, cv=GroupKFold(n_splits=folds)
    )
    correct = (predicted == labels).astype(float)
    silhouettes = silhouette_samples(features, labels, metric="cosine")
    per_sentence = {
        "silhouette": _sentence_means(silhouettes, groups),
        "probe_accuracy": _sentence_means(correct, groups),
    }
    dims = int(np.count_nonzero(eta2 >= threshold))
    result = {
        "silhouette": float(silhouettes.mean()),
        "probe_accuracy": float(correct.mean()),
        "language_specific_dims": dims,
        "language_specific_fraction": dims / features.shape[1],
        "mean_eta2": float(eta2.mean()),
        "per_sentence": {k: v.tolist() for k, v in per_sentence.items()},
    }
    if bootstrap_iterations > 0:
        for key, values in per_sentence.items():
            replicates = resample_means(values, bootstrap_iterations,
                                        unit_rng(seed, f"separability/{key}"))
            stats = significance(float(values.mean()), replicates)
            result[f"{key}_ci"] = [stats["ci_low"], stats["ci_high"]]
    return result


def _sentence_means(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Mean of ``values`` per sentence id, in sentence-id order."""
    _, inverse = np.unique(groups, return_inverse=True)
    return np.bincount(inverse, weights=values) / np.bincount(inverse)


def compare_layers(
    baseline: dict, other: dict, iterations: int = 10_000, seed: int = 0
) -> list[dict]:
    """Per layer, ``other`` − ``baseline`` in silhouette and probe accuracy with a paired
    bootstrap over sentences (both checkpoints saw the same sentences; a resample keeps
    each sentence's pair together), interval and p-value as in ``eval.comparing.bootstrap``."""
    rows = []
    for base_row, row in zip(baseline["layers"], other["layers"], strict=True):
        entry = {"layer": row["layer"]}
        for key in ("silhouette", "probe_accuracy"):
            differences = (np.asarray(row["per_sentence"][key])
                           - np.asarray(base_row["per_sentence"][key]))
            replicates = resample_means(differences, iterations,
                                        unit_rng(seed, f"layer{row['layer']}/{key}"))
            entry[key] = significance(row[key] - base_row[key], replicates)
        rows.append(entry)
    return rows


def separability_by_layer(
    representations: np.ndarray,
    labels: np.ndarray,
    groups: np.ndarray,
    threshold: float = DEFAULT_THRESHOLD,
    seed: int = 0,
    bootstrap_iterations: int = 0,
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
                **layer_separability(representations[layer], labels, groups, threshold, seed,
                                     bootstrap_iterations),
            }
            for layer in range(representations.shape[0])
        ],
    }
