"""The cost frontier of the attribution leaderboard: at each CPU budget, the best method and datamodels against TRAK.

A budget ``B`` affords every row whose measured ``cpu_seconds`` is at most ``B``; the best
attribution at ``B`` is the afforded row with the highest LDS. :func:`frontier` gives the budget
intervals over which that row (and so the method) stays the same; :func:`versus` compares the best
afforded row of two methods at every budget. Both are computed once here, written to the summary's
``frontier`` record (:func:`record`) and read by the figure and the docs (one computation, one number).
Rows without an LDS or a measured cost (skipped methods, external score matrices) are left out.
"""

from __future__ import annotations

from collections.abc import Sequence

from .table import Row


def _costed(rows: Sequence[Row]) -> list[Row]:
    return sorted((r for r in rows if r.lds is not None and r.cpu_seconds is not None),
                  key=lambda r: (float(r.cpu_seconds), -float(r.lds)))


def name(row: Row) -> str:
    """A row's method as the frontier names it: the method, and its variant if it has one."""
    return f"{row.method} ({row.variant})" if row.variant else row.method


def frontier(rows: Sequence[Row]) -> list[dict]:
    """Budget intervals ``[from_cpu_seconds, to_cpu_seconds)`` (the last one open: ``to`` null) and the best row in each.

    Each interval starts at the cost of a row that beats every cheaper row; consecutive intervals are kept
    apart even when the method is the same (its row, e.g. its number of models, changed): :func:`segments`
    merges them by method.
    """
    out: list[dict] = []
    for row in _costed(rows):
        if out and float(row.lds) <= out[-1]["lds"]:
            continue
        if out:
            out[-1]["to_cpu_seconds"] = float(row.cpu_seconds)
        out.append({"from_cpu_seconds": float(row.cpu_seconds), "to_cpu_seconds": None, "method": name(row),
                    "n_models": int(row.n_models), "lds": float(row.lds), "cpu_seconds": float(row.cpu_seconds)})
    return out


def segments(intervals: Sequence[dict], key: str = "method") -> list[dict]:
    """Consecutive intervals with the same ``key`` merged: ``from_cpu_seconds``, ``to_cpu_seconds`` and the key."""
    out: list[dict] = []
    for interval in intervals:
        if out and out[-1][key] == interval[key]:
            out[-1]["to_cpu_seconds"] = interval["to_cpu_seconds"]
        else:
            out.append({"from_cpu_seconds": interval["from_cpu_seconds"],
                        "to_cpu_seconds": interval["to_cpu_seconds"], key: interval[key]})
    return out


def versus(rows: Sequence[Row], first: str, second: str) -> list[dict]:
    """At each budget, the best afforded row of method ``first`` against that of ``second`` (any variant).

    Intervals ``[from_cpu_seconds, to_cpu_seconds)`` start at every cost of either method's rows; each gives both
    methods' best LDS within the budget (null: none of its rows is affordable yet) and the ``winner`` (the
    method with the higher LDS, the only one afforded, or null when neither is; a tie goes to ``first``).
    """
    candidates = [r for r in _costed(rows) if r.method in (first, second)]
    starts = sorted({float(r.cpu_seconds) for r in candidates})
    out = []
    for k, start in enumerate(starts):
        best = {}
        for method in (first, second):
            afforded = [float(r.lds) for r in candidates if r.method == method and float(r.cpu_seconds) <= start]
            best[method] = max(afforded) if afforded else None
        a, b = best[first], best[second]
        winner = None if a is None and b is None else first if b is None or (a is not None and a >= b) else second
        out.append({"from_cpu_seconds": start, "to_cpu_seconds": starts[k + 1] if k + 1 < len(starts) else None,
                    f"{first}_lds": a, f"{second}_lds": b, "winner": winner})
    return out


def record(rows: Sequence[Row], first: str = "datamodels", second: str = "trak") -> dict:
    """The summary's ``frontier``: the best row per budget interval, merged by method, and ``first`` vs ``second``."""
    best = frontier(rows)
    duel = versus(rows, first, second)
    return {"best": best, "best_method": segments(best),
            f"{first}_vs_{second}": duel, f"{first}_vs_{second}_winner": segments(duel, "winner")}


def describe(merged: Sequence[dict], key: str = "winner") -> str:
    """One line: which method wins over which budget range (from ``best_method`` or a ``*_vs_*_winner`` list)."""
    parts = []
    for seg in merged:
        upper = "∞" if seg["to_cpu_seconds"] is None else f"{seg['to_cpu_seconds']:.3g}"
        parts.append(f"[{seg['from_cpu_seconds']:.3g}, {upper}) CPU s: {seg[key] or 'neither'}")
    return "; ".join(parts)
