import math
import random

import pytest

from bench.fit import AlphaBeta, FitError, fit_alpha_beta, try_fit

SIZES = [4096 * 4**i for i in range(10)]  # 4 KiB ... 1 GiB, as the transfer sweep


def _points(alpha, beta, sizes=SIZES, noise=0.0, seed=0):
    rng = random.Random(seed)
    return [(b, (alpha + b / beta) * (1 + rng.uniform(-noise, noise))) for b in sizes]


@pytest.mark.parametrize("alpha,beta", [(8e-6, 52e9), (2.5e-5, 3.1e9), (1.2e-6, 450e9), (0.0, 20e9)])
def test_recovers_known_alpha_beta_exactly(alpha, beta):
    f = fit_alpha_beta(_points(alpha, beta))
    assert f.alpha_s == pytest.approx(alpha, rel=1e-9, abs=1e-15)
    assert f.beta_Bps == pytest.approx(beta, rel=1e-9)
    assert f.median_rel_err < 1e-9 and f.max_rel_err < 1e-9
    assert f.n_points == len(SIZES) and f.min_bytes == SIZES[0] and f.max_bytes == SIZES[-1]


def test_recovers_alpha_beta_from_noisy_points():
    alpha, beta = 9e-6, 48e9
    f = fit_alpha_beta(_points(alpha, beta, noise=0.03, seed=7))
    # ±3% noise per point: both parameters within a few percent, the residuals state the noise
    assert f.alpha_s == pytest.approx(alpha, rel=0.05)
    assert f.beta_Bps == pytest.approx(beta, rel=0.05)
    assert 0 < f.median_rel_err <= 0.03 + 1e-9 and f.max_rel_err <= 0.07


def test_small_messages_weigh_as_much_as_large_ones():
    # A 10% error on every small point must move alpha, even though the large points dominate in
    # absolute time: the relative weighting is what makes alpha meaningful.
    alpha, beta = 10e-6, 50e9
    pts = [(b, t * (1.1 if b < 1 << 16 else 1.0)) for b, t in _points(alpha, beta)]
    f = fit_alpha_beta(pts)
    assert f.alpha_s > alpha * 1.03
    assert f.beta_Bps == pytest.approx(beta, rel=0.02)


def test_time_and_bandwidth_predictions():
    f = AlphaBeta(alpha_s=1e-5, beta_Bps=1e10, n_points=2, min_bytes=1, max_bytes=2,
                  median_rel_err=0.0, max_rel_err=0.0)
    assert f.time_s(16384) == pytest.approx(1e-5 + 16384 / 1e10)
    assert f.time_s(0) == 1e-5
    assert f.bandwidth_Bps(1e5) == pytest.approx(1e5 / (1e-5 + 1e-5))
    assert f.half_bandwidth_bytes == pytest.approx(1e5)
    assert f.bandwidth_Bps(f.half_bandwidth_bytes) == pytest.approx(0.5e10)
    with pytest.raises(ValueError):
        f.time_s(-1)


def test_negative_latency_is_pinned_at_zero():
    # pure bandwidth with the smallest point a little fast: the free fit gives alpha < 0
    pts = [(b, b / 1e10) for b in SIZES]
    pts[0] = (pts[0][0], pts[0][1] * 0.8)
    f = fit_alpha_beta(pts)
    assert f.alpha_s == 0.0 and f.beta_Bps > 0
    assert math.isfinite(f.max_rel_err) and f.max_rel_err > 0


def test_refuses_what_cannot_be_fitted():
    with pytest.raises(FitError):
        fit_alpha_beta([(4096, 1e-5)])  # one size
    with pytest.raises(FitError):
        fit_alpha_beta([(4096, 1e-5), (4096, 2e-5)])  # one distinct size
    with pytest.raises(FitError):
        fit_alpha_beta([(4096, 2e-5), (1 << 20, 1e-5)])  # shrinks with size: no bandwidth term
    with pytest.raises(FitError):
        fit_alpha_beta([(4096, 0.0), (8192, 1e-5)])
    with pytest.raises(FitError):
        fit_alpha_beta([(4096, float("nan")), (8192, 1e-5)])
    assert try_fit([(1, 1.0)]) is None
    assert try_fit(_points(1e-5, 1e9)) is not None
