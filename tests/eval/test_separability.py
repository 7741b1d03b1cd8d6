import json

import numpy as np
import pytest

from eval.separability.corpus import load_parallel_file
from eval.separability.hidden_states import sentence_representations
from eval.separability.measures import eta_squared, layer_separability, parallel_dataset

LANGS = ("en", "de", "fr")


def _synthetic(language_dims: int, hidden: int = 16, sentences: int = 30, seed: int = 0):
    """Parallel 'sentences' whose first ``language_dims`` dims carry a per-language offset."""
    rng = np.random.default_rng(seed)
    content = rng.normal(size=(sentences, hidden))  # shared meaning of sentence i
    features, labels, groups = [], [], []
    for index, language in enumerate(LANGS):
        offset = np.zeros(hidden)
        offset[:language_dims] = 6.0 * (index - 1)
        features.append(content + offset + 0.1 * rng.normal(size=(sentences, hidden)))
        labels += [language] * sentences
        groups += list(range(sentences))
    return np.vstack(features), np.array(labels), np.array(groups)


def test_language_offsets_are_found_by_all_three_measures():
    features, labels, groups = _synthetic(language_dims=4)
    result = layer_separability(features, labels, groups)
    assert result["language_specific_dims"] == 4
    assert result["language_specific_fraction"] == pytest.approx(4 / 16)
    assert result["probe_accuracy"] == pytest.approx(1.0)
    assert result["silhouette"] > 0.2


def test_without_language_signal_nothing_separates():
    features, labels, groups = _synthetic(language_dims=0)
    result = layer_separability(features, labels, groups)
    assert result["language_specific_dims"] == 0
    assert result["probe_accuracy"] < 0.6  # chance is 1/3
    assert result["silhouette"] < 0.05


def test_eta_squared_is_explained_variance_fraction():
    labels = np.array(["a", "a", "b", "b"])
    features = np.array([[0.0, 1.0, 5.0], [2.0, 1.0, 5.0], [10.0, 2.0, 5.0], [12.0, 2.0, 5.0]])
    eta2 = eta_squared(features, labels)
    # dim 0: between = 4 * 25 = 100, total = 104; dim 1 is pure language; dim 2 constant.
    assert eta2 == pytest.approx([100 / 104, 1.0, 0.0])


def test_parallel_dataset_needs_aligned_languages():
    texts, labels, ids = parallel_dataset({"en": ["a", "b"], "de": ["c", "d"]})
    assert texts == ["a", "b", "c", "d"] and list(ids) == [0, 1, 0, 1]
    assert list(labels) == ["en", "en", "de", "de"]
    with pytest.raises(ValueError):
        parallel_dataset({"en": ["a", "b"], "de": ["c"]})


def test_parallel_file_normalises_codes_and_checks_alignment(tmp_path):
    path = tmp_path / "parallel.jsonl"
    path.write_text(
        json.dumps({"eng_Latn": "Hello.", "zho_Hans": "你好。"})
        + "\n"
        + json.dumps({"eng_Latn": "Bye.", "zho_Hans": "再见。"})
        + "\n"
    )
    assert load_parallel_file(path) == {"en": ["Hello.", "Bye."], "zh": ["你好。", "再见。"]}
    path.write_text(json.dumps({"en": "a", "de": "b"}) + "\n" + json.dumps({"en": "c"}) + "\n")
    with pytest.raises(ValueError, match="same ones"):
        load_parallel_file(path)


def test_hidden_states_do_not_depend_on_batch_padding(in_memory):
    sentences = ["Die Katze schläft auf dem Sofa.", "Bitte öffne das Fenster.", "猫在沙发上睡觉。"]
    batched = sentence_representations(in_memory.model, in_memory.tokenizer, sentences, 3)
    alone = np.concatenate(
        [sentence_representations(in_memory.model, in_memory.tokenizer, [s], 1) for s in sentences],
        axis=1,
    )
    layers = in_memory.model.config.num_hidden_layers + 1
    assert batched.shape == (layers, 3, in_memory.model.config.hidden_size)
    assert np.allclose(batched, alone, atol=1e-5)


def test_bundled_corpus_is_24_sentences_in_five_languages():
    # eval/README.md: "the bundled 24-sentence en/de/fr/es/zh corpus".
    from eval.parallel_corpus import LANGUAGES, SENTENCES

    assert LANGUAGES == ("en", "de", "fr", "es", "zh") and set(SENTENCES) == set(LANGUAGES)
    assert {len(sentences) for sentences in SENTENCES.values()} == {24}


def test_null_eta_squared_chance_and_default_threshold():
    """eval/README.md: threshold 0.5 by default, probe chance 1/k, and with no language
    effect eta² averages (k−1)/(N−1)."""
    from eval.separability.measures import DEFAULT_THRESHOLD, separability_by_layer

    assert DEFAULT_THRESHOLD == 0.5
    k, per_language, hidden = 3, 20, 4000
    n = k * per_language
    rng = np.random.default_rng(0)
    features = rng.normal(size=(1, n, hidden))
    labels = np.repeat(np.array(LANGS), per_language)
    groups = np.tile(np.arange(per_language), k)
    result = separability_by_layer(features, labels, groups)
    assert result["threshold"] == 0.5
    assert result["probe_chance"] == pytest.approx(1 / k)
    assert result["eta2_null"] == pytest.approx((k - 1) / (n - 1))
    # eta² ~ Beta((k−1)/2, (N−k)/2) under the null: sd about 0.033 here, so the mean over
    # 4000 independent dimensions has sd about 5e-4 around its expectation 2/59 ≈ 0.034.
    assert eta_squared(features[0], labels).mean() == pytest.approx(result["eta2_null"], abs=1.5e-3)
