"""Algorithm and bus bandwidth of the collectives rooflab measures and models, defined once.

The definitions are nccl-tests' (doc/PERFORMANCE.md). With S the bytes one rank contributes and t the time,
algbw = S / t. Bus bandwidth rescales it by what each rank must really move over the links, so that a number is
comparable with the link's rate whatever the world size n:

* all-reduce: a ring reduce-scatter then all-gather sends and receives 2(n − 1)/n · S per rank;
* all-to-all: (n − 1)/n of a rank's S leaves it (the chunk to itself stays).

The benchmarks turn measured times into busbw with these factors; the roofline model turns a link's (or a
measured curve's) busbw back into a time with the same factors.
"""
from __future__ import annotations

from typing import Literal

Collective = Literal["all_reduce", "all_to_all"]


def bus_factor(op: Collective, world_size: int) -> float:
    """busbw / algbw for ``op`` over ``world_size`` ranks (0 for one rank: nothing crosses a link)."""
    if world_size < 1:
        raise ValueError("world size must be >= 1")
    n = world_size
    if op == "all_reduce":
        return 2.0 * (n - 1) / n
    if op == "all_to_all":
        return (n - 1) / n
    raise ValueError(f"unknown collective {op!r}")


def algbw_Bps(nbytes: float, time_s: float) -> float:
    """Algorithm bandwidth: the bytes one rank contributes / time."""
    if time_s <= 0:
        raise ValueError("time must be positive")
    return nbytes / time_s


def busbw_Bps(op: Collective, algbw: float, world_size: int) -> float:
    return algbw * bus_factor(op, world_size)


def time_s(op: Collective, nbytes: float, busbw: float, world_size: int) -> float:
    """Time of one ``op`` of ``nbytes`` per rank over links that carry ``busbw``: the inverse of busbw_Bps."""
    if busbw <= 0:
        raise ValueError("bus bandwidth must be positive")
    return nbytes * bus_factor(op, world_size) / busbw
