"""Data: the embedded multilingual corpus, reading user data, tokenised examples.

- ``corpus``: parallel rows from num2words and babel/CLDR (licences there);
- ``miniature``: the number split, the fine-tuning files, the pretraining text;
- ``tasks``: the miniature's lm-eval tasks and their declaration for ``eval``;
- ``rows`` / ``examples`` / ``loading``: user data → checked rows → ``TokenizedExample``.
"""

from finetune.data.corpus import DEFAULT_LANGUAGES, check_languages
from finetune.data.examples import TokenizedExample, tokenize_row
from finetune.data.loading import SPLITS, load_languages

__all__ = ["DEFAULT_LANGUAGES", "SPLITS", "TokenizedExample", "check_languages",
           "load_languages", "tokenize_row"]
