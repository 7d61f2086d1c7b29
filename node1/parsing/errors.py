"""Errors of node1.parsing (one tree):

    ParsingError                 base class
    ├── InvalidParsingInput      a photo, landmark array or mask of the wrong shape / dtype / range
    └── DatasetError             prepare-dataset could not use a folder (missing, empty, not writable)
"""

from __future__ import annotations


class ParsingError(Exception):
    """Base class of node1.parsing's errors."""


class InvalidParsingInput(ParsingError, ValueError):  # noqa: N818 (names say what went wrong)
    """An input to the parser has the wrong shape, dtype or value range (the message names it)."""


class DatasetError(ParsingError):
    """prepare-dataset could not use a folder or found nothing usable in it."""
