"""Run ``rooflab validate``: every (model, batch, context) point measured and predicted, coarse to fine, within the
memory and the time budget, the result handed on after every point (docs/validate.md)."""
from __future__ import annotations

import gc
import math
import os
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from .. import profile as prof
from ..models import ModelSpec
from ..registry import RunContext
from ..roofline import StepEstimate
from ..target import Target
from . import point, rates, transformer
from .check import REFERENCE_SCRATCH_BYTES
from .plan import (
    DEFAULT_BATCHES,
    DEFAULT_CONTEXTS,
    DEFAULT_LAYERS,
    GPU_MARGIN_BYTES,
    MEMORY_FRACTION,
    device_room_bytes,
    point_bytes,
    point_order,
    reduced_model,
    weights_bytes,
)
from .prediction import NO_CPU_SPEC, Predictor, sweep_coverage
from .probe import DRIFT_LIMIT, ConditionsProbe
from .results import Result, Row, make_row, summarize, unsteady

BUDGET_RESERVE_S = 3.0  # of --budget, kept for writing the result


def validate(target: Target, models: Sequence[ModelSpec], *, measured: prof.Profile, profile_label: str,
             spec: prof.Profile | None = None, spec_note: str = "", layers: int | None = None,
             batches: Sequence[int] | None = None, contexts: Sequence[int] | None = None,
             min_time_s: float | None = None, seed: int = 0, notes: Sequence[str] = (),
             on_point: Callable[[Row], None] | None = None, budget_s: float | None = None,
             checkpoint: Callable[[Result], None] | None = None,
             clock: Callable[[], float] | None = None) -> Result:
    """Measure and predict every (model, batch, context) point (docs/validate.md).

    Points run coarse to fine (``point_order``). Before anything is allocated, a model whose weights, or a point
    whose KV cache, would not fit in MEMORY_FRACTION of the device's memory (GPU: nor in what is free right now,
    less the reference scratch and GPU_MARGIN_BYTES) is recorded as skipped with its prediction. ``budget_s``: a
    point that would end past the budget is not started (each model gets an even share of what is left; a point is
    guessed to take the median of that model's points so far) and is recorded as skipped "budget". ``checkpoint``
    gets the result so far after every point (``complete`` False), for a caller that writes it as it goes. A
    KeyboardInterrupt (Ctrl-C, or SIGTERM made one by the CLI) ends the run: the points not measured are recorded
    as skipped and the result says why (``stopped``).
    """
    clock = clock or time.monotonic
    t_start = clock()
    backend = target.backend
    dtype = transformer.step_dtype(target)
    order = point_order(list(batches or DEFAULT_BATCHES[backend]), list(contexts or DEFAULT_CONTEXTS[backend]))
    n_layers = layers if layers is not None else DEFAULT_LAYERS[backend]
    ctx = RunContext(target=target, quick=True, min_time_s=min_time_s, seed=seed)
    merged, _ = prof.with_spec(measured)
    predictor = Predictor.from_profiles(merged, profile_label, spec, dtype, on_gpu=target.is_cuda)
    if spec is None and not spec_note:
        spec_note = NO_CPU_SPEC if not target.is_cuda else "no spec sheet given: only the measured-profile prediction"
    all_notes = list(notes) + ([spec_note] if spec_note else [])
    load_start, cpu_start = _load_average(), _cpu_seconds()
    probe = ConditionsProbe(ctx, merged) if not target.is_cuda else None
    if probe is not None:
        all_notes.append(probe.compare_with())
    grid = sorted(order)
    coverage = sweep_coverage(merged, models, dtype, grid, on_gpu=target.is_cuda)
    memory = _Memory(budget=MEMORY_FRACTION * target.memory_bytes if target.memory_bytes else math.inf,
                     scratch=REFERENCE_SCRATCH_BYTES[backend], margin=GPU_MARGIN_BYTES if target.is_cuda else 0)
    run = _Run(target=target, ctx=ctx, dtype=dtype, models=list(models),
               reduced=[reduced_model(base, min(n_layers, base.layers)) for base in models], order=order,
               predictor=predictor, probe=probe, memory=memory, notes=all_notes, clock=clock, t_start=t_start,
               interleave=rates.Interleaver(ctx, merged, probe) if probe is not None else None,
               conditions={"cpus": os.cpu_count(), "load_average_start": load_start, "sweep": coverage},
               cpu_start=cpu_start,
               deadline=t_start + budget_s - BUDGET_RESERVE_S if budget_s is not None else None,
               profile_label=profile_label, spec_label=(spec.card or spec.name) if spec is not None else None,
               on_point=on_point, checkpoint=checkpoint)
    try:
        for i, model in enumerate(run.reduced):
            run.run_model(i, model)
    except KeyboardInterrupt as e:
        run.stopped = str(e) or "interrupted"
        for model in run.reduced:
            run.skip_rest(model, f"{run.stopped}: not measured")
    return run.result(complete=run.stopped is None)


def _load_average() -> list[float] | None:
    """The system's 1, 5 and 15-minute load averages (None where the OS has none)."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def _cpu_seconds() -> tuple[float, float] | None:
    """(CPU-seconds every process has used, CPU-seconds this process and its children have used) so far (Linux's
    /proc/stat: user, nice, system, irq, softirq and steal time; None elsewhere)."""
    try:
        import resource

        with open("/proc/stat", encoding="ascii") as f:
            fields = [int(x) for x in f.readline().split()[1:9]]
        busy = (sum(fields[:3]) + sum(fields[5:8])) / os.sysconf("SC_CLK_TCK")
        mine = sum(getattr(resource.getrusage(w), k) for w in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
                   for k in ("ru_utime", "ru_stime"))
    except (OSError, ValueError, ImportError, AttributeError):
        return None
    return busy, mine


def _others_share(start: tuple[float, float] | None, wall_s: float) -> float | None:
    """The share of the CPUs other processes used since ``start`` (``_cpu_seconds``), over ``wall_s``: 0 on a quiet
    machine. Our own work does not count (the load average does count it)."""
    now = _cpu_seconds()
    if start is None or now is None or wall_s <= 0:
        return None
    return max(0.0, ((now[0] - start[0]) - (now[1] - start[1])) / (wall_s * (os.cpu_count() or 1)))


@dataclass
class _Memory:
    """The bytes a run may use: ``budget`` (MEMORY_FRACTION of the device), ``scratch`` (the reference's float64
    copies) and ``margin`` (GPU: what a point allocates beyond its cache)."""

    budget: float
    scratch: int
    margin: int


@dataclass
class _Run:
    """One validation in progress: what is fixed for the run, the rows so far, the notes, and why it stopped."""

    target: Target
    ctx: RunContext
    dtype: str  # the step's (step_dtype)
    models: list[ModelSpec]  # as given (their names seed the weights)
    reduced: list[ModelSpec]  # the same, reduced to the layers built
    order: list[tuple[int, int]]  # (batch, context), coarse to fine
    predictor: Predictor
    probe: ConditionsProbe | None  # CPU only
    memory: _Memory
    notes: list[str]
    clock: Callable[[], float]
    t_start: float
    deadline: float | None  # clock time by which the points must end (--budget less BUDGET_RESERVE_S)
    profile_label: str
    spec_label: str | None
    on_point: Callable[[Row], None] | None
    checkpoint: Callable[[Result], None] | None
    interleave: rates.Interleaver | None = None  # CPU: the rates a prediction reads, re-measured beside each step
    conditions: dict[str, Any] = field(default_factory=dict)
    cpu_start: tuple[float, float] | None = None  # _cpu_seconds() when the run began
    rows: list[Row] = field(default_factory=list)
    done: set[tuple[str, int, int]] = field(default_factory=set)
    stopped: str | None = None

    # ------------------------------------------------------------------------------------------- the table
    def result(self, complete: bool) -> Result:
        """The result so far, rows in grid order (model, then batch, then context)."""
        grid = {(m.name, b, c): i for i, (m, (b, c)) in
                enumerate((m, bc) for m in self.reduced for bc in sorted(self.order))}
        ordered = sorted(self.rows, key=lambda r: grid.get((r.model, r.batch, r.context), len(grid)))
        res = Result(device=self.target.name, mode=self.target.backend, dtype=self.dtype, profile=self.profile_label,
                     spec=self.spec_label, rows=ordered, notes=list(dict.fromkeys(self.notes)),
                     prediction_notes=self.predictor.notes, complete=complete, stopped=self.stopped,
                     elapsed_s=self.clock() - self.t_start)
        res.summary = summarize(ordered)
        res.conditions = self._conditions(ordered)
        return res

    def _conditions(self, rows: list[Row]) -> dict[str, Any]:
        """How quiet the machine was (load average, the probe over the run, the steps' spread, unsteady points) and
        what the profile's sweep covers of this run (prediction.sweep_coverage)."""
        cond = {**self.conditions, "load_average_end": _load_average(),
                "others_cpu_share": _others_share(self.cpu_start, self.clock() - self.t_start)}
        ok = [r for r in rows if r.status == "ok" and r.measured_p10_s]
        spreads = [r.measured_p90_s / r.measured_p10_s for r in ok if r.measured_p90_s and r.measured_p10_s]
        cond["step_spread_median"] = statistics.median(spreads) if spreads else None
        cond["unsteady"] = sum(unsteady(r) for r in ok)
        cond["measured"] = len(ok)
        if self.probe is not None:
            p = self.probe
            cond.update(probe_bytes=p.nbytes, probe_start_Bps=p.start_Bps, probe_min_Bps=min(p.readings),
                        probe_max_Bps=max(p.readings),
                        profile_read_Bps=p.point.bandwidth_Bps if p.point is not None else None)
        return cond

    def add(self, row: Row, counts: bool = True) -> None:
        """Record a row; ``counts``: a point that ran (the caller's on_point hears of it)."""
        self.rows.append(row)
        self.done.add((row.model, row.batch, row.context))
        if self.on_point is not None and counts:
            self.on_point(row)
        if self.checkpoint is not None:
            self.checkpoint(self.result(False))

    def skip_rest(self, model: ModelSpec, why: str, status: str = "skipped") -> None:
        """Record every point of ``model`` not done yet as ``status`` with its predictions."""
        on_gpu = self.target.is_cuda
        for b, c in self.order:
            if (model.name, b, c) not in self.done:
                pred, spec_pred = self.predictor.point(model, b, c, graphs=on_gpu)
                self.add(make_row(model.name, model.layers, b, c, pred=pred, spec=spec_pred, status=status,
                                  reason=why, kernels_census=model.decode_kernels()), counts=False)

    # -------------------------------------------------------------------------------------------- the run
    def run_model(self, i: int, model: ModelSpec) -> None:
        """Build the i-th reduced model (if its weights fit) and run its points within its share of the budget."""
        target, mem = self.target, self.memory
        wb = weights_bytes(model, self.dtype)
        room = min(mem.budget, device_room_bytes(target) - mem.margin)
        if wb + mem.scratch > room:
            self.skip_rest(model, f"weights do not fit: {wb / 1e9:.1f} GB + {mem.scratch / 1e9:.1f} GB of check "
                                  f"scratch, over the {room / 1e9:.1f} GB usable")
            return
        model_deadline = None
        if self.deadline is not None:
            now = self.clock()
            model_deadline = now + (self.deadline - now) / (len(self.reduced) - i)
            if now >= model_deadline:
                self.skip_rest(model, "budget: not measured within --budget")
                return
        built = self._build(i, model)
        if isinstance(built, tuple):  # outside the except block: its traceback no longer holds the weights
            self._release()
            self.skip_rest(model, built[1], built[0])
            return
        net = built
        if model.is_moe:
            self.notes.append(f"{model.name}: experts " + ("through torch._grouped_mm (one grouped GEMM per "
                                                           "projection)" if net.grouped else
                                                           "one GEMM per hit expert (no torch._grouped_mm)"))
        if self.interleave is not None:
            self.interleave.bind(net)
        static_free = mem.budget - net.weight_bytes - mem.scratch
        took: list[float] = []
        for b, c in self.order:
            if model_deadline is not None:
                guess = statistics.median(took) if took else 0.0
                if self.clock() + guess > model_deadline:
                    self.skip_rest(model, "budget: not measured within --budget")
                    break
            t0 = self.clock()
            free = min(static_free, device_room_bytes(target) - mem.scratch - mem.margin)
            row = self.measure(net, model, b, c, free)
            row.wall_s = self.clock() - t0
            if row.status == "ok":
                took.append(row.wall_s)
            if unsteady(row):
                self.notes.append("the machine moved while some points ran (their rates moved beyond "
                                  f"{DRIFT_LIMIT:.0%} or their steps' repetitions spread: other load on this "
                                  "machine?): their errors say more about the load than the model")
            self.add(row)
            gc.collect()
        if self.interleave is not None:
            self.interleave.bind(None)
        del net
        self._release()

    def _build(self, i: int, model: ModelSpec) -> transformer.Transformer | tuple[str, str]:
        """The i-th reduced model's weights, or (status, reason) when it could not be built after all (e.g. memory
        taken meanwhile)."""
        target = self.target
        try:
            gen = torch.Generator(device=target.torch_device)
            gen.manual_seed(self.ctx.seed_for({"model": self.models[i].name, "layers": model.layers}))
            return transformer.Transformer(model, self.dtype, target.torch_device, gen)
        except (RuntimeError, MemoryError) as e:
            oom = isinstance(e, MemoryError) or "out of memory" in str(e).lower()
            return ("skipped" if oom else "failed",
                    ("weights do not fit: " if oom else f"building the model failed: {type(e).__name__}: ")
                    + (str(e).splitlines()[0][:160] if str(e) else ""))

    def _release(self) -> None:
        """Give freed tensors back (GPU: to the device, for the next model or point)."""
        gc.collect()
        if self.target.is_cuda:
            torch.cuda.empty_cache()

    def measure(self, net: transformer.Transformer, model: ModelSpec, batch: int, context: int,
                free_bytes: float) -> Row:
        """One point's row: skipped when its cache does not fit in ``free_bytes``, failed when its check fails or
        it raises, else measured; with both predictions (from the kernels counted, when they were)."""
        on_gpu = self.target.is_cuda
        census = model.decode_kernels()
        need = point_bytes(model, batch, context, self.dtype)
        if need > free_bytes:
            pred, spec_pred = self.predictor.point(model, batch, context, graphs=on_gpu)
            return make_row(model.name, model.layers, batch, context, pred=pred, spec=spec_pred, status="skipped",
                            reason=f"needs ~{need / 1e9:.1f} GB beside the weights, over the "
                                   f"{max(0.0, free_bytes) / 1e9:.1f}"
                                   f" GB usable ({MEMORY_FRACTION:.0%} of memory, less the check scratch)",
                            kernels_census=census)
        oom_error = getattr(torch.cuda, "OutOfMemoryError", MemoryError)
        failure = None
        session = None
        if self.interleave is not None:  # the curve points this point's prediction reads, re-measured beside it
            session = self.interleave.session(self.interleave.reads(
                lambda hw: self.predictor.with_hardware(hw, model, batch, context)))
        try:
            pr = point.measure_point(self.ctx, net, batch, context,
                                     self.ctx.seed_for({"model": model.name, "batch": batch, "context": context}),
                                     sample=session.sample if session is not None else None)
        except Exception as e:  # one bad point must not lose the table (e.g. out of memory at a large cache)
            oom = isinstance(e, (MemoryError, oom_error)) or "out of memory" in str(e).lower()
            failure = ("skipped" if oom else "failed",
                       f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
        if failure is not None:  # outside the except block: its traceback no longer holds the point's tensors
            if on_gpu:
                self._release()
            pred, spec_pred = self.predictor.point(model, batch, context, graphs=on_gpu)
            return make_row(model.name, model.layers, batch, context, pred=pred, spec=spec_pred, status=failure[0],
                            reason=failure[1], kernels_census=census)
        self.notes.extend(pr.notes)
        pred, spec_pred = self.predictor.point(model, batch, context, graphs=pr.graphs, kernels=pr.kernels)
        profile_pred, extra = None, {}
        if session is not None and session.complete:
            profile_pred = pred

            def at(which: int | None) -> StepEstimate:
                assert session is not None
                return self.predictor.with_profile(session.profile(which), model, batch, context,
                                                   graphs=pr.graphs, kernels=pr.kernels)

            # the prediction from the rates' median over the passes; how far any pass's rates would move it from the
            # first pass's says whether the machine held still
            pred, first = at(None), at(0)
            moves = [at(i).step_time_s / first.step_time_s - 1.0 for i in range(1, len(session.passes))]
            extra = {"drift": session.drift, "rates_drift": max(moves, key=abs),
                     "probe_Bps": session.probe[0], "rates_remeasured": len(session.reads) - session.kept,
                     "rates_kept": session.kept}
        kt = pr.kernel_times or {}
        return make_row(model.name, model.layers, batch, context, measured=pr.timing, pred=pred, spec=spec_pred,
                        profile_pred=profile_pred, **extra,
                        status=pr.status, reason=pr.reason, graphs=pr.graphs,
                        moe_path=("grouped_mm" if net.grouped else "per-expert loop") if model.is_moe else None,
                        check_rel_err=pr.check_rel_err, check_tol=pr.check_tol, profiled_kernels_s=kt.get("kernels"),
                        profiled_matmul_s=kt.get("matmul"), profiled_attention_s=kt.get("attention"),
                        profiled_other_s=kt.get("other"), kernels_census=census)
