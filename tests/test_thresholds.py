"""One threshold table: `rooflab doctor` and the verdict of `rooflab run` give the same copy bandwidth the same
grade, whatever the fraction of spec."""
from __future__ import annotations

from pathlib import Path

import pytest

from bench import doctor, thresholds, verdict
from bench import profile as P

SPEC = P.resolve("spec:h100-sxm")
SPEC_BW = SPEC.peaks.memory_bandwidth_Bps
EDGES = (thresholds.COPY_OF_SPEC.pass_at, thresholds.COPY_OF_SPEC.warn_at)
FRACTIONS = sorted({0.5, 0.6, 0.68, 0.7, 0.72, 0.73, 0.74, 0.76, 0.8, 0.82, 0.83, 0.84, 0.85, 0.87, 0.9, 0.95, 1.0,
                    *EDGES, *(e * (1 + 1e-9) for e in EDGES), *(e * (1 - 1e-9) for e in EDGES)})


def _doctor_grade(fraction: float, profiles: Path) -> str:
    f = doctor.Findings(identity={"mig_enabled": False})
    f.probes["hbm"] = doctor.ProbeResult("hbm", values={"copy_Bps": fraction * SPEC_BW}, passed=True)
    return doctor.check_hbm(f, doctor.expected_for("h100-sxm", profiles)).status.lower()


def _verdict_grade(fraction: float) -> str:
    prof = P.validate({"schema_version": P.SCHEMA_VERSION, "name": "t",
                       "device": {"name": "NVIDIA H100 80GB HBM3", "backend": "cuda"},
                       "peaks": {"copy_bandwidth_Bps": fraction * SPEC_BW}})
    return next(c for c in verdict.evaluate(prof, SPEC) if c.name == "memory bandwidth, copy").status


@pytest.fixture(scope="module")
def spec_profiles_only(tmp_path_factory) -> Path:
    """The committed spec profiles and no measured one (the doctor then holds its probe against the spec)."""
    root = tmp_path_factory.mktemp("profiles")
    (root / "specs").symlink_to(P.profiles_dir() / "specs", target_is_directory=True)
    return root


@pytest.mark.parametrize("fraction", FRACTIONS)
def test_doctor_and_verdict_grade_copy_bandwidth_alike(fraction, spec_profiles_only):
    assert _doctor_grade(fraction, spec_profiles_only) == _verdict_grade(fraction)


@pytest.mark.parametrize("fraction,grade", [(0.9, "pass"), (0.83, "pass"), (0.8, "warn"), (0.75, "warn"),
                                            (0.72, "fail"), (0.6, "fail")])
def test_the_copy_rule(fraction, grade, spec_profiles_only):
    """PASS from 95% of a healthy card (0.87 of spec), FAIL below 85% of it: 0.83 passes and 0.72 fails in both
    tools."""
    assert _doctor_grade(fraction, spec_profiles_only) == _verdict_grade(fraction) == grade


def test_band_grades_and_scales():
    band = thresholds.Band(pass_at=0.95, warn_at=0.85)
    assert [band.grade(x, 1.0) for x in (0.96, 0.95, 0.9, 0.85, 0.84)] == ["pass", "pass", "warn", "warn", "fail"]
    assert band.of(0.87) == thresholds.COPY_OF_SPEC
    assert thresholds.COPY_OF_SPEC.pass_at == pytest.approx(0.8265)
    assert thresholds.COPY_OF_SPEC.warn_at == pytest.approx(0.7395)
