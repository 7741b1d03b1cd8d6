"""Multilingual benchmark families known to the registry.

A family is described only by how lm-eval names its per-language tasks or groups; which
languages exist is read from the installed lm-eval's task index (see ``registry.py``), so
a newer lm-eval with more languages needs no change here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class BenchmarkSpec:
    """How to find one benchmark's per-language entries in lm-eval's task index.

    ``pattern`` is matched against every registered name; its ``lang`` group is the
    benchmark's own spelling of the language. ``kinds`` restricts matches to leaf tasks
    ("task") or groups ("group"), which keeps e.g. INCLUDE's per-subject tasks out.
    ``metrics`` is an order of preference among the metrics lm-eval reports ("acc",
    or "exact_match,flexible-extract" to pin a filter); when none is present the first
    higher-is-better metric is used.

    ``folders`` names the folders of lm-eval's ``tasks/`` directory whose configs belong
    to the family: lm-eval's regional suites (catalan_bench, galician_bench, basque_bench)
    reuse names such as ``xnli_ca``, and a name alone would count them as the original
    benchmark. Empty: any folder. Tasks from an include path are matched by name alone.
    ``named`` adds (task, language) pairs the pattern cannot express, e.g. the English
    source task of a translated benchmark.
    """

    name: str
    pattern: str
    kinds: frozenset[str] = frozenset({"task"})
    metrics: tuple[str, ...] = ()
    language_is_name: bool = False
    description: str = ""
    folders: frozenset[str] = frozenset()
    named: tuple[tuple[str, str], ...] = ()
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = re.compile(self.pattern)
        if "lang" not in compiled.groupindex:
            raise ValueError(f"pattern for {self.name!r} needs a (?P<lang>...) group")
        object.__setattr__(self, "regex", compiled)


_GROUP = frozenset({"group"})


def _in(*folders: str) -> frozenset[str]:
    return frozenset(folders)


# lm-eval's regional suites: translations of a benchmark made for one more language.
_REGIONAL = _in("catalan_bench", "galician_bench", "basque_bench", "xnli_eu")

BUILTIN_BENCHMARKS: tuple[BenchmarkSpec, ...] = (
    BenchmarkSpec(
        "xnli",
        r"^xnli_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="XNLI natural language inference",
        folders=_in("xnli"),
    ),
    BenchmarkSpec(
        "xcopa",
        r"^xcopa_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="XCOPA causal commonsense",
        folders=_in("xcopa"),
    ),
    BenchmarkSpec(
        "xstorycloze",
        r"^xstorycloze_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="XStoryCloze story endings",
        folders=_in("xstorycloze"),
    ),
    BenchmarkSpec(
        "xwinograd",
        r"^xwinograd_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="XWinograd coreference",
        folders=_in("xwinograd"),
    ),
    BenchmarkSpec(
        "pawsx",
        r"^paws_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="PAWS-X paraphrase identification",
        folders=_in("paws-x"),
    ),
    BenchmarkSpec(
        "mgsm",
        r"^mgsm_direct_(?P<lang>[a-z]{2})$",
        metrics=("exact_match,flexible-extract", "exact_match"),
        description="MGSM grade-school maths, direct answer",
        folders=_in("mgsm"),
    ),
    BenchmarkSpec(
        "belebele",
        r"^belebele_(?P<lang>[a-z]{3}_[A-Z][a-z]{3})$",
        metrics=("acc",),
        description="Belebele reading comprehension",
        folders=_in("belebele"),
    ),
    BenchmarkSpec(
        "okapi_arc",
        r"^arc_(?P<lang>[a-z]{2})$",
        metrics=("acc_norm", "acc"),
        description="Okapi multilingual ARC (ARC-Challenge translated); English: lm-eval's "
        "arc_challenge, the source questions with the same prompt",
        folders=_in("okapi"),
        named=(("arc_challenge", "en"),),
    ),
    BenchmarkSpec(
        "okapi_hellaswag",
        r"^hellaswag_(?P<lang>[a-z]{2})$",
        metrics=("acc_norm", "acc"),
        description="Okapi multilingual HellaSwag (validation split translated); English: "
        "lm-eval's hellaswag, the source split with the same preprocessing and prompt",
        folders=_in("okapi"),
        named=(("hellaswag", "en"),),
    ),
    BenchmarkSpec(
        "okapi_mmlu",
        r"^m_mmlu_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="Okapi multilingual MMLU",
        folders=_in("okapi"),
    ),
    BenchmarkSpec(
        "global_mmlu",
        r"^global_mmlu_(?P<lang>[a-z]{2})$",
        kinds=_GROUP,
        metrics=("acc",),
        description="Global-MMLU (lite), per-language group",
        folders=_in("global_mmlu"),
    ),
    BenchmarkSpec(
        "global_mmlu_full",
        r"^global_mmlu_full_(?P<lang>[a-z]{2,3})$",
        kinds=_GROUP,
        metrics=("acc",),
        description="Global-MMLU (full), per-language group",
        folders=_in("global_mmlu"),
    ),
    BenchmarkSpec(
        "include",
        r"^include_base_44_(?P<lang>[a-z]+(?:_[a-z]+)?)$",
        kinds=_GROUP,
        metrics=("acc",),
        language_is_name=True,
        description="INCLUDE regional knowledge, per-language group",
        folders=_in("include"),
    ),
    BenchmarkSpec(
        "mmlu_prox",
        r"^mmlu_prox_(?P<lang>[a-z]{2})$",
        kinds=_GROUP,
        metrics=("exact_match,custom-extract", "exact_match"),
        description="MMLU-ProX, per-language group",
        folders=_in("mmlu_prox"),
    ),
    BenchmarkSpec(
        "xquad",
        r"^xquad_(?P<lang>[a-z]{2})$",
        metrics=("f1", "exact_match"),
        description="XQuAD extractive QA",
        folders=_in("xquad"),
    ),
    BenchmarkSpec(
        "mlqa",
        r"^mlqa_(?P<lang>[a-z]{2})_(?P=lang)$",
        metrics=("f1", "exact_match"),
        description="MLQA extractive QA, same-language context and question",
        folders=_in("mlqa"),
    ),
    BenchmarkSpec(
        "tydiqa",
        r"^tydiqa_goldp_(?P<lang>[a-z]{2})$",
        metrics=("f1", "exact_match"),
        description="TyDi QA gold passage",
        folders=_in("tydiqa"),
    ),
    BenchmarkSpec(
        "lambada_multilingual",
        r"^lambada_openai_mt_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="LAMBADA machine-translated",
        folders=_in("lambada_multilingual"),
    ),
    # lm-eval's regional suites translate a benchmark into one more language (Catalan,
    # Galician, Basque) under the original's task name (xnli_ca). Each is a benchmark of its
    # own, so that `xnli` means the original 15 languages and a regional translation is
    # chosen on purpose.
    BenchmarkSpec(
        "xnli_regional",
        r"^xnli_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="XNLI translated by lm-eval's regional suites (catalan_bench, "
        "galician_bench, xnli_eu)",
        folders=_REGIONAL,
    ),
    BenchmarkSpec(
        "xcopa_regional",
        r"^xcopa_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="XCOPA translated by lm-eval's regional suites (basque_bench)",
        folders=_REGIONAL,
    ),
    BenchmarkSpec(
        "xstorycloze_regional",
        r"^xstorycloze_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="XStoryCloze translated by lm-eval's regional suites (catalan_bench, "
        "galician_bench)",
        folders=_REGIONAL,
    ),
    BenchmarkSpec(
        "pawsx_regional",
        r"^paws_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="PAWS-X translated by lm-eval's regional suites",
        folders=_REGIONAL,
    ),
    BenchmarkSpec(
        "mgsm_regional",
        r"^mgsm_direct_(?P<lang>[a-z]{2})$",
        metrics=("exact_match,flexible-extract", "exact_match"),
        description="MGSM (direct answer) translated by lm-eval's regional suites",
        folders=_REGIONAL,
    ),
    BenchmarkSpec(
        "belebele_regional",
        r"^belebele_(?P<lang>[a-z]{3}_[A-Z][a-z]{3})$",
        metrics=("acc",),
        description="Belebele translated by lm-eval's regional suites (galician_bench)",
        folders=_REGIONAL,
    ),
    BenchmarkSpec(
        "xquad_regional",
        r"^xquad_(?P<lang>[a-z]{2})$",
        metrics=("f1", "exact_match"),
        description="XQuAD translated by lm-eval's regional suites (catalan_bench)",
        folders=_REGIONAL,
    ),
    BenchmarkSpec(
        "mmmlu",
        r"^mmmlu_(?P<lang>[a-z]{2}_[a-z]{2})$",
        kinds=_GROUP,
        metrics=("acc",),
        description="OpenAI MMMLU (MMLU human-translated into 14 locales), per-locale group",
        folders=_in("openai-mmmlu"),
    ),
    BenchmarkSpec(
        "global_piqa",
        # One variety per language: the home country's for French, Portuguese and Spanish
        # (fra_latn_fran, por_latn_port, spa_latn_spai); the other regional and dialect
        # variants (fr-CA, pt-BR, es-MX, es-PE, four Levantine Arabic countries, Slovak,
        # Slovene and Torlak dialects) are left out rather than counted as the language.
        r"^global_piqa_nonparallel_cloze_(?P<lang>[a-z]{3}_[a-z]{4})(?:_(?:fran|port|spai))?$",
        metrics=("acc_norm", "acc"),
        description="Global PIQA, non-parallel (culturally specific) split, cloze format "
        "(log-likelihood, for base models)",
        folders=_in("global_piqa"),
    ),
    BenchmarkSpec(
        "global_piqa_parallel",
        r"^global_piqa_parallel_cloze_(?P<lang>[a-z]{3}_[a-z]{4})(?:_(?:fran|port|spai))?$",
        metrics=("acc_norm", "acc"),
        description="Global PIQA, parallel split (same items in every language), cloze format",
        folders=_in("global_piqa"),
    ),
    BenchmarkSpec(
        "afrixnli",
        r"^afrixnli_(?P<lang>[a-z]{3})_prompt_1$",
        metrics=("acc",),
        description="AfriXNLI (IrokoBench), in-language input (not translate-test), prompt 1",
        folders=_in("afrixnli"),
    ),
    BenchmarkSpec(
        "afrimmlu",
        r"^afrimmlu_direct_(?P<lang>[a-z]{3})_prompt_1$",
        metrics=("acc",),
        description="AfriMMLU (IrokoBench), in-language input (not translate-test), prompt 1",
        folders=_in("afrimmlu"),
    ),
    BenchmarkSpec(
        "afrimgsm",
        r"^afrimgsm_(?P<lang>[a-z]{3})_prompt_1$",
        metrics=("exact_match,flexible-extract", "exact_match"),
        description="AfriMGSM (IrokoBench), in-language input, direct answer (not CoT), "
        "prompt 1",
        folders=_in("afrimgsm"),
    ),
    BenchmarkSpec(
        "multiblimp",
        r"^multiblimp_(?P<lang>[a-z]{3})$",
        metrics=("acc",),
        description="MultiBLiMP 1.0 grammatical minimal pairs (agreement), sentence "
        "log-likelihood",
        folders=_in("multiblimp"),
    ),
    BenchmarkSpec(
        "arc_mt",
        # English is arc_challenge, already the English unit of okapi_arc: one lm-eval task
        # can be one unit only (see selection.py), so arc_mt has no English of its own.
        r"^arc_challenge_mt_(?P<lang>[a-z]{2})$",
        metrics=("acc_norm", "acc"),
        description="ARC-Challenge machine-translated (LumiOpen); English via okapi_arc",
        folders=_in("arc_mt"),
    ),
    BenchmarkSpec(
        "truthfulqa_multi",
        r"^truthfulqa-multi_mc2_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="TruthfulQA-multi (en, es, ca, gl, eu), MC2: probability mass on the "
        "true answers",
        folders=_in("truthfulqa-multi"),
    ),
    BenchmarkSpec(
        "indicxnli",
        r"^indicxnli_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="IndicXNLI (lm-eval 0.4.13 ships Gujarati only)",
        folders=_in("indicxnli"),
    ),
)

# The bundled offline suite (``eval.running.local_tasks`` writes its YAML and data);
# declared here with the built-ins so that the registry knows them without importing
# the writer (languages/ comes before running/).
LOCAL_BENCHMARKS: tuple[BenchmarkSpec, ...] = (
    BenchmarkSpec(
        "local_xnli",
        r"^local_xnli_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="built-in XNLI prompt on bundled local data",
    ),
    BenchmarkSpec(
        "local_wordorder",
        r"^local_wordorder_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="natural vs shuffled word order on bundled local data",
    ),
)
