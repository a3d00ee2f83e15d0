"""Exceptions raised by the training package."""


class TrainingError(Exception):
    """Base class of every error the training package raises on purpose."""


class CheckpointError(TrainingError):
    """A checkpoint file is unreadable, unsafe, or does not fit the model."""


class ConfigError(TrainingError):
    """A configuration value is invalid or contradicts another one."""


class DataError(TrainingError):
    """A data folder is missing, empty, or holds no readable image."""


class NonFiniteLossError(TrainingError):
    """The training loss became NaN or infinite."""
