"""Summaries of repeated measurements."""
from __future__ import annotations

import statistics
from typing import Iterable


def summarize(samples: Iterable[float | None]) -> dict:
    """Median with spread; failed runs (None) are counted, not averaged in.

    The median rather than the mean because one run hit by a neighbour's
    build on a 2-core machine should not move the figure.
    """
    all_samples = list(samples)
    values = sorted(v for v in all_samples if v is not None)
    out = {
        "n": len(values),
        "failed": len(all_samples) - len(values),
        "samples": all_samples,
        "median": None,
        "min": None,
        "max": None,
        "q1": None,
        "q3": None,
    }
    if not values:
        return out
    out["median"] = statistics.median(values)
    out["min"] = values[0]
    out["max"] = values[-1]
    if len(values) >= 2:
        # Inclusive quantiles stay inside [min, max], which is what a reader
        # of a 5-sample spread expects.
        q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
        out["q1"], out["q3"] = q1, q3
    else:
        out["q1"] = out["q3"] = values[0]
    return out


def ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline:
        return None
    return value / baseline
