import pytest

from eval.languages.codes import UnknownLanguageError, canonical_language, language_name


@pytest.mark.parametrize(
    ("spelling", "canonical"),
    [
        ("zho_Hans", "zh"),  # belebele / FLORES: ISO 639-3 + default script
        ("zh", "zh"),
        ("cmn", "zh"),  # individual language folded into its macrolanguage
        ("zho_Hant", "zh-Hant"),  # non-default script stays distinct
        ("jp", "ja"),  # xwinograd's country code
        ("ja", "ja"),
        ("arb_Arab", "ar"),
        ("hin_Latn", "hi-Latn"),
        ("eng_Latn", "en"),
        ("pt-BR", "pt"),  # region dropped
        ("EN", "en"),
        ("German", "de"),  # INCLUDE names languages
        ("north_macedonian", "mk"),
        ("tgl", "fil"),
    ],
)
def test_spellings_of_one_language_share_a_canonical_tag(spelling, canonical):
    assert canonical_language(spelling) == canonical


@pytest.mark.parametrize("nonsense", ["xx", "englsh", "zz_Zzzz", ""])
def test_strings_that_name_no_language_are_rejected(nonsense):
    with pytest.raises(UnknownLanguageError):
        canonical_language(nonsense)


def test_display_names_come_from_langcodes():
    assert language_name("zh-Hant") == "Chinese (Traditional)"
    assert language_name("de") == "German"
