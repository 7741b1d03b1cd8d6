"""Normalise the language codes that lm-eval's benchmarks spell in different conventions.

Benchmarks name languages as ISO 639-1 (``zh``), ISO 639-3 with a script (``zho_Hans``),
individual languages of a macrolanguage (``arb``, ``cmn``), English names (``chinese``)
or outright quirks (xwinograd's ``jp``, a country code). One canonical tag per language
lets "seen" and "unseen" mean the same thing on every benchmark.

Canonical form: the shortest BCP-47 tag with

- the language folded into its macrolanguage when that is how the language is
  usually named: ``langcodes`` folds the "normal" member (``arb`` -> ``ar``,
  ``cmn`` -> ``zh``), and :data:`FOLDED_MEMBERS` the members benchmarks use for the
  whole language (Belebele's ``pbt`` -> ``ps``, as users write Pashto), while the
  members in :data:`DISTINCT_MEMBERS` stay apart (``acm``, ``apc``: Arabic
  varieties are distinct test languages);
- the region dropped, after it has told the script (``zh-TW`` -> ``zh-Hant``);
- the script kept only when it differs from the language's usual one, where a
  script that is part of the usual one counts as the usual one (``kor_Hang`` ->
  ``ko``: Hangul is part of the Korean script ``Kore``), and where CLDR does not
  know a language's usual script, the script given is taken as the usual one
  (``acm_Arab`` -> ``acm`` as ``apc_Arab`` -> ``apc``). A different script is a different input
  distribution for a tokenizer and a model, so ``zho_Hant`` -> ``zh-Hant``.

>>> canonical_language("zho_Hans"), canonical_language("zho_Hant"), canonical_language("jp")
('zh', 'zh-Hant', 'ja')
>>> canonical_language("arb_Arab"), canonical_language("German")
('ar', 'de')
>>> canonical_language("kor_Hang"), canonical_language("pbt_Arab"), canonical_language("zh-TW")
('ko', 'ps', 'zh-Hant')
"""

from __future__ import annotations

import langcodes

# Codes or names that benchmarks use but that no language standard resolves.
# jp: xwinograd uses the country code for Japanese.
# north macedonian: INCLUDE names the language after the country.
_QUIRKS = {
    "jp": "ja",
    "north macedonian": "mk",
}


class UnknownLanguageError(ValueError):
    """Raised when a string is neither a valid language tag nor a language name."""


def canonical_language(code_or_name: str) -> str:
    """Return the canonical tag for a language code (any convention) or English name."""
    text = code_or_name.strip()
    quirk = _QUIRKS.get(text.lower().replace("_", " "))
    if quirk is not None:
        text = quirk
    tag = text.replace("_", "-")
    if not langcodes.tag_is_valid(tag):
        tag = _tag_from_name(text)
    # langcodes folds a macrolanguage's "normal" member (arb -> ar); a member kept apart on
    # purpose (dhd, which CLDR takes for Marwari) is standardised without that fold.
    fold = langcodes.Language.get(tag).language not in DISTINCT_MEMBERS
    given = langcodes.Language.get(langcodes.standardize_tag(tag, macro=fold))
    if not given.language or given.language == "und":
        raise UnknownLanguageError(f"{code_or_name!r} does not name a language")
    language = _fold_macrolanguage(given.language)
    script = given.script
    if script is None and given.territory is not None:
        script = _likely_script(f"{language}-{given.territory}")
    usual = _usual_script(language)
    # Where CLDR knows no usual script (acm), the one given is taken as the usual one, so
    # that acm_Arab and a user's acm agree.
    if script is not None and (usual is None or script in _PARTS_OF_SCRIPT.get(usual, {usual})):
        script = None
    return langcodes.Language.make(language=language, script=script).to_tag()


# Scripts that are parts of a composite usual script: text in them is text in the usual one.
_PARTS_OF_SCRIPT = {
    "Kore": {"Kore", "Hang"},
    "Jpan": {"Jpan", "Hira", "Kana", "Hrkt"},
}


def _fold_macrolanguage(language: str) -> str:
    return FOLDED_MEMBERS.get(language, language)


def _likely_script(tag: str) -> str | None:
    """The script CLDR's likely subtags give ``tag`` (None where CLDR has no entry)."""
    from langcodes.data_dicts import LIKELY_SUBTAGS

    likely = LIKELY_SUBTAGS.get(tag)
    return None if likely is None else langcodes.Language.get(likely).script


def _usual_script(language: str) -> str | None:
    return _likely_script(language)


# Members of a macrolanguage that benchmarks use for the language as a whole (users write
# the macrolanguage's code). langcodes folds each macrolanguage's "normal" member already
# (arb -> ar, pbu -> ps); Belebele's Pashto is pbt and its Fulah is fuv.
FOLDED_MEMBERS = {"pbt": "ps", "pst": "ps", "fuv": "ff"}

# Members that benchmarks test as languages of their own beside the macrolanguage (Belebele
# has five Arabic varieties beside arb, and Sorani beside Kurmanji). Every member code in
# lm-eval's index must be in one of these two tables (tests/eval/test_language_index.py).
DISTINCT_MEMBERS = frozenset({
    "acm", "apc", "ars", "ary", "arz", "ckb", "yue",
    # Global PIQA: Ta'izzi-Adeni, Tunisian, Gulf and Algerian Arabic beside arb, each with
    # its own items; Dhundari, Marwari (India) and Shekhawati, three varieties of the
    # Marwari macrolanguage tested side by side (CLDR folds dhd into mwr, which would label
    # Dhundari "Marwari" beside the real Marwari, rwr).
    "acq", "aeb", "afb", "arq", "dhd", "rwr", "swv",
    # MultiBLiMP: Gheg beside Albanian, Komi-Permyak beside Komi, and Kangri, a Western
    # Pahari language that ISO files under Dogri but no one would call Dogri.
    "aln", "koi", "xnr",
})


def language_name(tag: str) -> str:
    """English display name of a canonical tag, e.g. 'Chinese (Traditional)'."""
    return langcodes.Language.get(tag).display_name()


def _tag_from_name(name: str) -> str:
    try:
        return langcodes.find(name.replace("_", " ")).to_tag()
    except LookupError as err:
        raise UnknownLanguageError(
            f"{name!r} is neither a language code nor a language name"
        ) from err
