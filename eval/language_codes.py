"""Normalise the language codes that lm-eval's benchmarks spell in different conventions.

Benchmarks name languages as ISO 639-1 (``zh``), ISO 639-3 with a script (``zho_Hans``),
individual languages of a macrolanguage (``arb``, ``cmn``), English names (``chinese``)
or outright quirks (xwinograd's ``jp``, a country code). One canonical tag per language
lets "seen" and "unseen" mean the same thing on every benchmark.

Canonical form: the shortest BCP-47 tag from ``langcodes`` with macrolanguages folded
(``arb`` -> ``ar``), the region dropped, and the script kept only when it is not the
language's usual one (``zho_Hans`` -> ``zh`` but ``zho_Hant`` -> ``zh-Hant``), because a
different script is a different input distribution for a tokenizer and a model.

>>> canonical_language("zho_Hans"), canonical_language("zho_Hant"), canonical_language("jp")
('zh', 'zh-Hant', 'ja')
>>> canonical_language("arb_Arab"), canonical_language("German")
('ar', 'de')
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
    language = langcodes.Language.get(langcodes.standardize_tag(tag, macro=True))
    if not language.language or language.language == "und":
        raise UnknownLanguageError(f"{code_or_name!r} does not name a language")
    usual_script = langcodes.Language.get(language.language).maximize().script
    script = language.script if language.script != usual_script else None
    return langcodes.Language.make(language=language.language, script=script).to_tag()


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
