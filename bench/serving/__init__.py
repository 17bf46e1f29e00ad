"""Published serving results held against the roofline model, and the comparison a buyer reads.

A card one cannot rent is judged by what others measured on it. The package is split by job:

- ``rows``: the serving-results file (profiles/serving.json): one cited row per published result, read strictly
  and checked against the profile library and the model presets (``load``, ``ServingRow``, ``ServingError``);
- ``predict``: what the roofline model says a row's deployment gives on a profile (``predict``);
- ``published``: ``rooflab validate --published``: every row predicted from the spec, published and measured
  profiles, the upper-bound check, the fraction of the roofline each engine reached, ranking agreement;
- ``buyer``: ``rooflab compare``'s cards with the profile each number came from and the closest public result.

Nothing here imports torch: it needs only the profiles, the models and the roofline model. See docs/serving.md.
"""
from __future__ import annotations

from .rows import ServingError, ServingRow, default_path, load, parse

__all__ = ["ServingError", "ServingRow", "default_path", "load", "parse"]
