"""Errors shared by every lmech package.

``BadInput`` is raised before any work starts when a value given by the user cannot be used; its
message names the offending parameter, the value received and what is allowed (the scikit-learn
style). The CLI turns it into exit code 2.
"""

from __future__ import annotations


class LmechError(Exception):
    """Base class of lmech's own errors."""


class BadInput(LmechError, ValueError):
    """A user-supplied value is invalid: the message names it, its value and what is expected."""

    def __init__(self, name: str, value: object, expected: str):
        self.name = name
        self.value = value
        self.expected = expected
        super().__init__(f"{name}={value!r} is invalid: expected {expected}")
