"""The few exception types users see. Each message says what went wrong and how to fix it."""


class Cifar100Error(Exception):
    """Base class: the command line prints the message alone, without a traceback."""


class DataError(Cifar100Error):
    """The dataset is missing, corrupt or not in the CIFAR-100 python format."""


class ConfigError(Cifar100Error):
    """A recipe name or parameter is invalid."""


class BudgetError(ConfigError):
    """A run asks for more epochs than the study's 10-epoch budget allows."""


class RunError(Cifar100Error):
    """The run directory or a notebook execution is in a state the pipeline cannot continue from."""


class TrainingDiverged(RunError):
    """The loss became NaN or infinite; training stopped at once."""


class ImageError(Cifar100Error):
    """A file or folder given to ``predict`` is missing or holds no readable image."""


class ExportError(Cifar100Error):
    """A model cannot be exported: its converter is not installed, or the output path is unusable."""


class OutputError(Cifar100Error):
    """An ``--output`` path cannot be written: a name too long, a file where a folder goes, an unwritable folder."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C: the message says what was kept and how to continue (the command line exits with 130)."""
