"""The LLM-inference roofline model: what a decode step costs on a card, from its profile, a model and a deployment.

Pure functions over data: a profile (bench/profile, spec sheet or measured), a model (bench/models.py) and a
deployment. Nothing here measures anything. The package is split by job:

- ``hardware``: the rates the model reads from a profile (``Hardware``), peaks or measured curves;
- ``deployment``: how the model is spread over a replica's GPUs, and its number formats (``Deployment``);
- ``step``: one decode step (``Roofline.step`` -> ``StepEstimate``), prefill, KV capacity, optimal batch;
- ``sweep``: a batch sweep on one card (``estimate``) and cards side by side (``compare``).

The names other modules use are re-exported here (``from bench import roofline; roofline.estimate(...)``).
The model, term by term, is described in docs/model.md.
"""
from __future__ import annotations

from .deployment import DEFAULT_MEMORY_UTILIZATION, Deployment, native_support
from .hardware import SERVER_GPUS, Hardware, RooflineError, best_by_x, interp_log, matmul_family
from .step import Roofline, StepEstimate
from .sweep import (
    DEFAULT_BATCHES,
    DEFAULT_CONTEXT,
    CompareRow,
    Estimate,
    auto_deployment,
    batch_grid,
    candidate_deployments,
    compare,
    estimate,
)

__all__ = [
    "DEFAULT_BATCHES", "DEFAULT_CONTEXT", "DEFAULT_MEMORY_UTILIZATION", "SERVER_GPUS",
    "CompareRow", "Deployment", "Estimate", "Hardware", "Roofline", "RooflineError", "StepEstimate",
    "auto_deployment", "batch_grid", "best_by_x", "candidate_deployments", "compare", "estimate", "interp_log",
    "matmul_family", "native_support",
]
