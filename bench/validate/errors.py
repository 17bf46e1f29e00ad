"""The one error ``rooflab validate`` raises for a request it cannot run."""
from __future__ import annotations


class ValidateError(ValueError):
    """Validation cannot run as asked (unknown model, unsupported architecture, bad grid); one line."""
