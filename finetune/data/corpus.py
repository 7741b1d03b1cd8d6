"""The embedded parallel corpus: the same numbers, dates and names in every language.

Everything is generated from two installed packages, so the corpus needs no download and
is identical wherever it is built:

- ``num2words`` (LGPL-2.1) spells cardinal numbers in about 44 languages;
- ``babel`` (BSD-3-Clause) formats dates and units and names languages and territories
  from the Unicode CLDR data it bundles (Unicode License v3).

The corpus is *parallel by construction*: row ``i`` of every language expresses the same
content (the same number, date, unit or name), only the language differs. Every row is a
key → value pair, written in the miniature's one format ``<lang>|<key>=<value>``:

>>> number_row("de", 372)
('de|372=', 'dreihundertzweiundsiebzig')
>>> number_row("fr", 21)
('fr|21=', 'vingt et un')
>>> [row for row in babel_rows("nl") if row[0] == "nl|de="]
[('nl|de=', 'Duits')]
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from functools import cache

from finetune.errors import DataError

DEFAULT_LANGUAGES: tuple[str, ...] = ("en", "de", "ru", "ar", "nl", "uk", "fa", "fr")

# Fixed content for the babel part: territories and units chosen to exist in CLDR for
# every locale used here; dates spread over the months so every month name appears.
_TERRITORIES = ("DE", "FR", "NL", "RU", "UA", "IR", "EG", "GB", "US", "CN", "JP", "BR",
                "IN", "ES", "IT", "PL", "TR", "SE", "CA", "MX")
_UNITS = ("length-kilometer", "length-meter", "mass-kilogram", "duration-day",
          "duration-hour", "duration-minute", "volume-liter", "duration-year")
_UNIT_AMOUNTS = (1, 2, 3, 5, 12)


def prompt(language: str, key: str) -> str:
    """The prompt of one row: ``<lang>|<key>=``; the value follows without a separator."""
    return f"{language}|{key}="


def check_languages(languages: Sequence[str]) -> tuple[str, ...]:
    """The languages as a tuple, or a DataError naming those the corpus cannot produce."""
    languages = tuple(languages)
    if not languages:
        raise DataError("no languages given")
    duplicates = sorted({lang for lang in languages if languages.count(lang) > 1})
    if duplicates:
        raise DataError(f"languages given twice: {duplicates}")
    missing = [lang for lang in languages if not _supported(lang)]
    if missing:
        raise DataError(
            f"the embedded corpus has no data for {missing}: a language needs number words "
            "in num2words and a CLDR locale in babel (e.g. en de ru ar nl uk fa fr)")
    return languages


@cache
def _supported(language: str) -> bool:
    from babel import Locale, UnknownLocaleError
    from num2words import CONVERTER_CLASSES

    if language not in CONVERTER_CLASSES:
        return False
    try:
        Locale.parse(language)
    except (UnknownLocaleError, ValueError):
        return False
    return True


def number_words(language: str, number: int) -> str:
    """Cardinal ``number`` spelled out in ``language`` (num2words)."""
    from num2words import num2words

    return num2words(number, lang=language)


def number_row(language: str, number: int) -> tuple[str, str]:
    """``(prompt, completion)`` of the numbers → words task."""
    return prompt(language, str(number)), number_words(language, number)


def babel_rows(language: str) -> list[tuple[str, str]]:
    """CLDR-derived ``(prompt, completion)`` rows, in the same order for every language.

    Keys are language-neutral (ISO codes, ISO dates, ``3 km``-style unit keys), values
    are ``language``'s words: language names, territory names, long dates, long units.
    """
    from babel import Locale
    from babel.dates import format_date
    from babel.units import format_unit

    locale = Locale.parse(language)
    rows = [(prompt(language, code), locale.languages[code]) for code in DEFAULT_LANGUAGES]
    rows += [(prompt(language, code), locale.territories[code]) for code in _TERRITORIES]
    for month in range(1, 13):
        date = datetime.date(2000 + 2 * month, month, 3 + 2 * month)
        rows.append((prompt(language, date.isoformat()),
                     format_date(date, format="long", locale=locale)))
    for unit in _UNITS:
        for amount in _UNIT_AMOUNTS:
            key = f"{amount} {unit.split('-', 1)[1]}"
            rows.append((prompt(language, key),
                         format_unit(amount, unit, length="long", locale=locale)))
    return rows
