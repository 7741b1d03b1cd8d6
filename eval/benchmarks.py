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
    """

    name: str
    pattern: str
    kinds: frozenset[str] = frozenset({"task"})
    metrics: tuple[str, ...] = ()
    language_is_name: bool = False
    description: str = ""
    regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        compiled = re.compile(self.pattern)
        if "lang" not in compiled.groupindex:
            raise ValueError(f"pattern for {self.name!r} needs a (?P<lang>...) group")
        object.__setattr__(self, "regex", compiled)


_GROUP = frozenset({"group"})

BUILTIN_BENCHMARKS: tuple[BenchmarkSpec, ...] = (
    BenchmarkSpec(
        "xnli",
        r"^xnli_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="XNLI natural language inference",
    ),
    BenchmarkSpec(
        "xcopa",
        r"^xcopa_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="XCOPA causal commonsense",
    ),
    BenchmarkSpec(
        "xstorycloze",
        r"^xstorycloze_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="XStoryCloze story endings",
    ),
    BenchmarkSpec(
        "xwinograd",
        r"^xwinograd_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="XWinograd coreference",
    ),
    BenchmarkSpec(
        "pawsx",
        r"^paws_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="PAWS-X paraphrase identification",
    ),
    BenchmarkSpec(
        "mgsm",
        r"^mgsm_direct_(?P<lang>[a-z]{2})$",
        metrics=("exact_match,flexible-extract", "exact_match"),
        description="MGSM grade-school maths, direct answer",
    ),
    BenchmarkSpec(
        "belebele",
        r"^belebele_(?P<lang>[a-z]{3}_[A-Z][a-z]{3})$",
        metrics=("acc",),
        description="Belebele reading comprehension",
    ),
    BenchmarkSpec(
        "okapi_arc",
        r"^arc_(?P<lang>[a-z]{2})$",
        metrics=("acc_norm", "acc"),
        description="Okapi multilingual ARC",
    ),
    BenchmarkSpec(
        "okapi_hellaswag",
        r"^hellaswag_(?P<lang>[a-z]{2})$",
        metrics=("acc_norm", "acc"),
        description="Okapi multilingual HellaSwag",
    ),
    BenchmarkSpec(
        "okapi_mmlu",
        r"^m_mmlu_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="Okapi multilingual MMLU",
    ),
    BenchmarkSpec(
        "global_mmlu",
        r"^global_mmlu_(?P<lang>[a-z]{2})$",
        kinds=_GROUP,
        metrics=("acc",),
        description="Global-MMLU (lite), per-language group",
    ),
    BenchmarkSpec(
        "global_mmlu_full",
        r"^global_mmlu_full_(?P<lang>[a-z]{2,3})$",
        kinds=_GROUP,
        metrics=("acc",),
        description="Global-MMLU (full), per-language group",
    ),
    BenchmarkSpec(
        "include",
        r"^include_base_44_(?P<lang>[a-z]+(?:_[a-z]+)?)$",
        kinds=_GROUP,
        metrics=("acc",),
        language_is_name=True,
        description="INCLUDE regional knowledge, per-language group",
    ),
    BenchmarkSpec(
        "mmlu_prox",
        r"^mmlu_prox_(?P<lang>[a-z]{2})$",
        kinds=_GROUP,
        metrics=("exact_match,custom-extract", "exact_match"),
        description="MMLU-ProX, per-language group",
    ),
    BenchmarkSpec(
        "xquad",
        r"^xquad_(?P<lang>[a-z]{2})$",
        metrics=("f1", "exact_match"),
        description="XQuAD extractive QA",
    ),
    BenchmarkSpec(
        "mlqa",
        r"^mlqa_(?P<lang>[a-z]{2})_(?P=lang)$",
        metrics=("f1", "exact_match"),
        description="MLQA extractive QA, same-language context and question",
    ),
    BenchmarkSpec(
        "tydiqa",
        r"^tydiqa_goldp_(?P<lang>[a-z]{2})$",
        metrics=("f1", "exact_match"),
        description="TyDi QA gold passage",
    ),
    BenchmarkSpec(
        "lambada_multilingual",
        r"^lambada_openai_mt_(?P<lang>[a-z]{2})$",
        metrics=("acc",),
        description="LAMBADA machine-translated",
    ),
)
