"""What the roofline model says a published serving result's deployment gives on a profile.

``predict(row, profile)`` puts the row's model, in the row's weight formats, on the profile with the row's GPUs
and parallel layout, at the mean decode context (``ServingRow.decode_context``), and returns the rate the row's
metric measures:

- a latency row (concurrency 1): tokens/s per user of a batch-1 decode step;
- a throughput row: tokens/s per GPU at the row's batch (its running sequences, or its concurrency) capped by the
  KV capacity, or, where the source does not state one, the best over every batch that fits (the roofline's
  maximum throughput).

Decode steps only: a published result also spends time on prefill and scheduling, so a real result above the
prediction is a model error. A KV format the source does not state is taken as fp8 where the card has FP8
(bf16 where not), the smallest an engine would use, so the prediction stays an upper bound; ``assumed`` says so.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .. import profile as prof
from ..roofline import Hardware, Roofline, RooflineError, batch_grid, native_support
from .rows import ServingRow, deployment_for

MAX_BATCH_CAP = 1 << 16  # the largest batch tried where memory does not limit it sooner


@dataclass
class Prediction:
    rate: float  # tokens/s per user (latency row) or per GPU (throughput row)
    batch: int
    context: int
    bound: str
    step_time_s: float
    kv_dtype: str
    assumed: list[str] = field(default_factory=list)


def assumed_kv(profile: prof.Profile) -> str:
    """The KV format taken where a source does not state one: fp8 on a card with FP8, else bf16."""
    return "fp8" if native_support(profile, "fp8") else "bf16"


def predict(row: ServingRow, profile: prof.Profile) -> Prediction:
    """The roofline model's rate for ``row`` on ``profile`` (merged with its spec sheet where it is measured);
    RooflineError or ProfileError with one line when it cannot be evaluated."""
    merged, _ = prof.with_spec(profile)
    assumed = []
    kv = row.kv_dtype
    if kv is None:
        kv = assumed_kv(merged)
        assumed.append(f"KV {kv} (not stated)")
    rl = Roofline(Hardware(merged, label=row.card), row.model_spec(), deployment_for(row, kv_dtype=kv))
    ctx = row.decode_context
    mb = rl.max_batch(ctx)
    if mb is not None and mb < 1:
        raise RooflineError(f"{row.gpus} x {row.card} cannot hold {row.model} and one sequence of {ctx} tokens")
    cap = min(mb if mb is not None else MAX_BATCH_CAP, MAX_BATCH_CAP)
    if row.scenario == "latency":
        st = rl.step(1, ctx)
        return Prediction(st.tokens_per_s_per_user, 1, ctx, st.bound, st.step_time_s, kv, assumed)
    wanted = row.batch or row.concurrency
    if wanted is not None:
        b = min(wanted, cap)
        if b < wanted:
            assumed.append(f"batch {b}: the KV capacity at this context (the source runs {wanted})")
        steps = [rl.step(b, ctx)]
    else:
        steps = [rl.step(b, ctx) for b in batch_grid(cap)]
    best = max(steps, key=lambda s: s.tokens_per_s_per_gpu)
    return Prediction(best.tokens_per_s_per_gpu, best.batch, ctx, best.bound, best.step_time_s, kv, assumed)
