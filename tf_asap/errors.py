"""Typed errors raised by tf_asap.

Every error a user can cause is one of these. They subclass `ValueError` or
`TypeError` so that ordinary `except ValueError` code keeps working, and their
messages say what is wrong, what was expected, what was received and how to
fix it.
"""


class TfAsapError(Exception):
    """Base class of every error tf_asap raises on purpose."""


class UnsupportedModelError(TfAsapError, TypeError):
    """The model cannot be analysed (subclassed model, unknown input shape...)."""


class UnsupportedLayerError(TfAsapError, TypeError):
    """A layer that tf_asap does not know how to prune or slim."""


class MaskError(TfAsapError, ValueError):
    """A mask has the wrong name, length or content."""


class ConfigurationError(TfAsapError, ValueError):
    """An argument has a value outside its documented range."""


class DataError(TfAsapError, ValueError):
    """A data set cannot be found, read or used."""


class RunDirectoryError(TfAsapError, ValueError):
    """A run directory belongs to another model or is corrupt."""


class ExportError(TfAsapError, ValueError):
    """A model cannot be exported as asked."""
