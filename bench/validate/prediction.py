"""The roofline model's prediction of a point (bench/roofline.py), from this device's measured profile and from a
spec sheet, and where those two profiles come from."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeAlias

from .. import dtypes, roofline
from .. import profile as prof
from ..models import ModelSpec
from ..target import Target
from .errors import ValidateError

# The decode-attention kernel each device's step runs, as the profile's decode curve names it (impl/layout): the
# prediction reads that kernel's measured bandwidth, not the best of all kernels measured.
ATTENTION_IMPL = {"cuda": "triton/contiguous", "cpu": "torch_sdpa/contiguous"}
# The benchmarks the measured-profile prediction needs: memory curve, matmul efficiency by shape, launch
# overhead per kernel, decode-attention bandwidth by (batch, context).
NEEDED_BENCHMARKS = ("hbm", "gemm", "overhead", "decode")
NO_CPU_SPEC = ("no spec sheet exists for a CPU (profiles/specs holds GPU data sheets): only the measured-profile "
               "prediction is shown")


def deployment(dtype: str, cuda_graphs: bool, kernels: int | None = None,
               attention_impl: str | None = None) -> roofline.Deployment:
    """One GPU, weights and KV cache in the step's dtype (the model's own release format is not used: the step
    runs what it says); ``kernels``: the kernels the real step launches, when counted (else the model's census);
    ``attention_impl``: the decode-attention kernel the step runs (ATTENTION_IMPL)."""
    md = dtypes.short(dtype)
    return roofline.Deployment(weight_dtype=md, kv_dtype=md, act_dtype=md, cuda_graphs=cuda_graphs,
                               kernels_per_step=kernels, attention_impl=attention_impl)


def predict(hw: roofline.Hardware, model: ModelSpec, dep: roofline.Deployment, batch: int,
            context: int) -> roofline.StepEstimate:
    """The roofline model's decode step for the reduced model: ``batch`` sequences each attending to ``context``
    tokens (the new one included, as the measured step does)."""
    return roofline.Roofline(hw, model, dep).step(int(batch), int(context))


# (measured-profile prediction, spec-sheet prediction or None)
Predictions: TypeAlias = "tuple[roofline.StepEstimate, roofline.StepEstimate | None]"


@dataclass
class Predictor:
    """The two predictions of a point in the step's ``dtype``: from the measured profile (``hw``: its curves) and
    from a spec sheet (``hw_spec``: peaks; None without one); ``on_gpu``: the step runs on a GPU. ``with_profile``
    predicts from the same profile with re-measured points (bench/validate/rates.py)."""

    hw: roofline.Hardware
    hw_spec: roofline.Hardware | None
    dtype: str
    on_gpu: bool
    more_notes: list[str] = field(default_factory=list)  # what the predictions from re-measured profiles said

    @classmethod
    def from_profiles(cls, measured: prof.Profile, label: str, spec: prof.Profile | None, dtype: str,
                      on_gpu: bool) -> Predictor:
        """``measured``: already merged with its card's spec sheet (profile.with_spec); ``label``: where it came
        from."""
        try:
            hw = roofline.Hardware(measured, use_curves=True, label=label)
            hw_spec = roofline.Hardware(spec, use_curves=False) if spec is not None else None
        except roofline.RooflineError as e:
            raise ValidateError(str(e)) from None
        return cls(hw, hw_spec, dtype, on_gpu)

    @property
    def notes(self) -> list[str]:
        """What the model says about its inputs (the spec sheet's notes prefixed ``spec:``)."""
        return list(dict.fromkeys(list(self.hw.notes) + self.more_notes)) + (
            [f"spec: {n}" for n in self.hw_spec.notes] if self.hw_spec is not None else [])

    def _deployment(self, graphs: bool, kernels: int | None) -> roofline.Deployment:
        return deployment(self.dtype, graphs, kernels, attention_impl=ATTENTION_IMPL["cuda" if self.on_gpu else "cpu"])

    def point(self, model: ModelSpec, batch: int, context: int, *, graphs: bool,
              kernels: int | None = None) -> Predictions:
        """Both predictions of one point; ``graphs``: the step replays from a CUDA graph; ``kernels``: the kernels
        it launches, when counted."""
        try:
            dep = self._deployment(graphs, kernels)
            return (predict(self.hw, model, dep, batch, context),
                    predict(self.hw_spec, model, dep, batch, context) if self.hw_spec is not None else None)
        except roofline.RooflineError as e:
            raise ValidateError(str(e)) from None

    def with_hardware(self, hw: roofline.Hardware, model: ModelSpec, batch: int, context: int, *,
                      graphs: bool = False, kernels: int | None = None) -> roofline.StepEstimate:
        """The measured-profile prediction of one point from ``hw`` (e.g. a tracing Hardware of the profile)."""
        try:
            return predict(hw, model, self._deployment(graphs, kernels), batch, context)
        except roofline.RooflineError as e:
            raise ValidateError(str(e)) from None

    def with_profile(self, profile: prof.Profile, model: ModelSpec, batch: int, context: int, *,
                     graphs: bool = False, kernels: int | None = None) -> roofline.StepEstimate:
        """The measured-profile prediction of one point from ``profile`` (the profile with re-measured points)."""
        try:
            hw = roofline.Hardware(profile, use_curves=True, label=self.hw.label)
        except roofline.RooflineError as e:
            raise ValidateError(str(e)) from None
        est = self.with_hardware(hw, model, batch, context, graphs=graphs, kernels=kernels)
        self.more_notes += [n for n in hw.notes if n not in self.more_notes]
        return est


def sweep_coverage(profile: prof.Profile, models: Sequence[ModelSpec], dtype: str,
                   grid: Sequence[tuple[int, int]], on_gpu: bool) -> dict[str, Any]:
    """What the profile's sweep covers of a run, so a claim can say what it rests on: the weight GEMM shapes of
    ``models`` measured in the step's ``dtype`` (and the M they were measured at), the decode points of the grid
    measured with the kernel the step runs, and the models whose shapes the gemm sweep was given."""
    mm = [p for p in profile.curves.matmul if p.dtype == dtype]
    have = {(p.N, p.K) for p in mm}
    needed: set[tuple[int, int]] = set()
    missing: list[str] = []
    for m in models:
        for g in m.matmuls():
            if (g.n, g.k) not in needed:
                needed.add((g.n, g.k))
                if (g.n, g.k) not in have:
                    missing.append(f"{m.name} {g.name} (N={g.n}, K={g.k})")
    ms = sorted({p.M for p in mm if (p.N, p.K) in needed and p.family == "llm"})
    impl, _, layout = ATTENTION_IMPL["cuda" if on_gpu else "cpu"].partition("/")
    dec = {(p.q_heads, p.kv_heads, p.head_dim, p.batch, p.context) for p in profile.curves.decode
           if p.impl == impl and p.layout == layout and p.dtype == dtype}
    dmissing = [f"{m.name} batch {b} context {c}" for m in models for b, c in grid
                if (m.heads, m.kv_heads, m.head_dim, b, c) not in dec]
    swept = sorted({n.rsplit(" ", 1)[0] for s in profile.curves.matmul_shapes for n in s.layers})
    return {"dtype": dtype, "matmul_shapes": len(needed), "matmul_missing": missing,
            "matmul_M": [ms[0], ms[-1]] if ms else None, "decode_points": len(models) * len(grid),
            "decode_missing": dmissing, "swept_models": swept}


# ---------------------------------------------------------------------------------------------- profiles
def spec_profile_for(target: Target, ref: str | None) -> tuple[prof.Profile | None, str]:
    """The spec profile to predict from (``ref``, else the card torch reports) and a note saying which."""
    if ref:
        try:  # a bare card name here names its spec sheet, not the most real profile of the card
            spec = prof.resolve(f"spec:{ref}" if ref in prof.library("spec") else ref)
        except prof.ProfileError as e:
            raise ValidateError(str(e)) from None
        if spec.kind != "spec":
            raise ValidateError(f"--spec {ref} is a {spec.kind} profile; give a spec sheet (profiles/specs)")
        return spec, f"spec sheet: {spec.card or spec.name} (--spec)"
    if not target.is_cuda:
        return None, NO_CPU_SPEC
    card = prof.card_for_device(target.name)
    if card is None:
        return None, f"no spec sheet lists {target.name!r} (give one with --spec NAME)"
    return prof.resolve(f"spec:{card}"), f"spec sheet: {card} (matched by device name)"


def load_measured(ref: str, target: Target) -> tuple[prof.Profile, list[str]]:
    """A measured profile given by the user, with warnings when it was not measured on this device."""
    try:
        measured = prof.resolve(ref)
    except prof.ProfileError as e:
        raise ValidateError(str(e)) from None
    if measured.kind != "measured":
        raise ValidateError(f"--profile {ref} is a spec sheet; give a measured profile (rooflab run writes one), "
                            "or leave it out to measure this device first")
    notes = []
    if measured.device.backend != target.backend or measured.device.name != target.name:
        notes.append(f"the measured profile is of {measured.device.name} ({measured.device.backend}), the steps run "
                     f"on {target.name} ({target.backend}): errors compare two devices")
    return measured, notes


def measure_profile(target: Target, out_dir: Path, *, quick: bool = True, force: bool = False,
                    log: Callable[[str], None] | None = None, on_progress: Any = None,
                    budget_s: float | None = None) -> prof.Profile:
    """Run the benchmarks the model needs on this device (``rooflab run --only hbm,gemm,overhead,decode``) into
    ``out_dir`` and return the measured profile (``budget_s``: the runner's --budget)."""
    from .. import runner

    try:
        res = runner.run(list(NEEDED_BENCHMARKS), target, out_dir, quick=quick, force=force, log=log,
                         on_progress=on_progress, budget_s=budget_s)
    except runner.RunError as e:
        raise ValidateError(str(e)) from None
    if res.interrupted:
        raise ValidateError(f"interrupted while measuring the profile ({res.signal}); what was measured is in "
                            f"{out_dir}: give it back with --profile {out_dir / runner.PROFILE}")
    return res.profile
