"""PNG plots of the latency tests (`python run.py latency ... --plot PATH`).

Figures come from cosine_host.plotting (matplotlib, optional, imported only when a plot is asked
for).
"""
from __future__ import annotations

from cosine_host.plotting import figure, save_png

KINDS = ("algorithmic", "roundtrip", "bench")


def plot_latency(kind: str, result: dict, path) -> None:
    """Draw ``result`` of cosine_host.measure.algorithmic.algorithmic, cosine_host.measure.roundtrip.roundtrip or
    cosine_host.measure.bench.bench as a PNG at ``path``.

    Args:
        kind: "algorithmic", "roundtrip" or "bench" (which function made ``result``).
        result: that function's dict.
        path: the PNG to write (replaced atomically; its folder must exist).
    Raises:
        UserError: matplotlib missing, or the file cannot be written.
        ValueError: unknown ``kind``.
    """
    draw = {"algorithmic": _algorithmic, "roundtrip": _roundtrip, "bench": _bench}.get(kind)
    if draw is None:
        raise ValueError(f"unknown plot kind {kind!r}; allowed: {', '.join(KINDS)}")
    fig = figure()
    draw(fig, result)
    save_png(fig, path)


def _algorithmic(fig, result: dict) -> None:
    """Measured delay (transform and bypass, min..max over impulses) next to the reported
    latency and the theoretical minimum, per block size."""
    ax = fig.add_subplot()
    rows = result["rows"]
    x = list(range(len(rows)))
    ax.bar(x, [r["minimum_samples"] for r in rows], width=0.7, color="0.85",
           label="minimum N - gcd(B, H)")
    ax.plot(x, [r["reported_samples"] for r in rows], "_", color="k", markersize=28,
            markeredgewidth=2, label="reported")
    for key, marker, label in (("measured", "o", "measured (transform)"),
                               ("bypass", "x", "measured (bypass)"),
                               ("processors", "^", "measured (with processors)")):
        pts = [(i, r[f"{key}_range"]) for i, r in zip(x, rows) if r[f"{key}_range"]]
        if not pts:
            continue
        ax.errorbar([i for i, _ in pts], [(lo + hi) / 2 for _, (lo, hi) in pts],
                    yerr=[[(hi - lo) / 2 for _, (lo, hi) in pts]] * 2, fmt=marker,
                    capsize=3, label=label)
    for i, r in zip(x, rows):
        if not r["passed"]:
            ax.annotate("FAIL", (i, r["reported_samples"]), textcoords="offset points",
                        xytext=(0, 8), ha="center", color="red")
    ax.set_xticks(x, [r["blocks"] for r in rows])
    ax.set_xlabel("block size (samples)")
    ax.set_ylabel("latency (samples)")
    ax.set_title(f"Algorithmic latency, N={result['frame_size']} H={result['hop']}: "
                 f"{'all pass' if result['passed'] else 'MISMATCH'}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small")


def _roundtrip(fig, result: dict) -> None:
    """Measured round trip per repeat against the expected one (device + engine)."""
    ax = fig.add_subplot()
    runs = result["repeats"]
    ms = 1e3 / result["samplerate"]
    k = [r["repeat"] for r in runs]
    ax.plot(k, [r["measured_samples"] for r in runs], "o", label="measured (GCC-PHAT)")
    ax.axhline(result["expected_samples"], color="k", linestyle="--",
               label=f"expected {result['expected_samples']} = device "
                     f"{result['device_samples']} + engine {result['engine_samples']}")
    ax.axhline(result["device_samples"], color="0.6", linestyle=":", label="device only")
    ax.set_xticks(k)
    ax.set_xlabel("repeat")
    ax.set_ylabel("round trip (samples)")
    secondary = ax.secondary_yaxis("right", functions=(lambda s: s * ms, lambda t: t / ms))
    secondary.set_ylabel("ms")
    ax.set_ylim(bottom=0)
    ax.set_title(f"Round trip{' (bypass)' if result['bypass'] else ''}: median "
                 f"{result['measured_samples']['median']} samples, difference "
                 f"{result['difference_samples']:+d}")
    ax.legend(loc="lower right", fontsize="small")


def _bench(fig, result: dict) -> None:
    """Per-call time (p50, p99, max) against the budget and half of it, per device."""
    ax = fig.add_subplot()
    ok = [r for r in result["rows"] if r["status"] == "ok"]
    sizes = sorted(result["blocksizes"])
    budget = [1e3 * b / result["samplerate"] for b in sizes]
    ax.plot(sizes, budget, "k-", label="budget B / rate")
    ax.plot(sizes, [b * result["safe_fraction_of_budget"] for b in budget], "k:",
            label="half the budget")
    for device in result["devices"]:
        rows = sorted((r for r in ok if r["device"] == device), key=lambda r: r["blocksize"])
        if not rows:
            continue
        b = [r["blocksize"] for r in rows]
        line, = ax.plot(b, [r["p50_ms"] for r in rows], "o-", label=f"{device} p50")
        ax.plot(b, [r["p99_ms"] for r in rows], "s--", color=line.get_color(),
                label=f"{device} p99")
        ax.plot(b, [r["max_ms"] for r in rows], "^:", color=line.get_color(), alpha=0.6,
                label=f"{device} max")
    missing = [d for d, s in result["devices"].items() if not s["available"]]
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xticks(sizes, [str(b) for b in sizes])
    ax.set_xlabel("block size (samples)")
    ax.set_ylabel("time per engine.process call (ms)")
    title = f"Compute budget at {result['samplerate']} Hz"
    if missing:
        title += f" ({', '.join(missing)} unavailable)"
    ax.set_title(title)
    ax.legend(fontsize="small", ncol=2)
