"""The one exception type for bad input to ``finetune``.

Every problem a user can cause (a missing file, a malformed row, an unknown
method, an ``--out`` that holds another run) raises a subclass of
:class:`FinetuneError` whose message names the problem; the command line prints
it in one line and exits with status 2.
"""


class FinetuneError(ValueError):
    """Bad input, found before expensive work starts."""


class DataError(FinetuneError):
    """Training or evaluation data that cannot be used (names the file and line)."""


class ConfigError(FinetuneError):
    """A setting that is unknown, inconsistent, or differs from the run in ``--out``."""


class TrainingError(FinetuneError):
    """Training cannot go on (e.g. a non-finite loss); the last checkpoint is kept."""
