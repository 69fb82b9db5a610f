"""Latency against offered load, one line per system, one panel per upstream delay.

p50 solid and p99 dashed in the system's colour; a filled marker is a sustained
step, a cross one that was not. Both axes are logarithmic: the systems differ
by orders of magnitude in rate and, past their limit, in latency.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

from bench.compare.report import TABLE_SYSTEMS, Results, delays, steps_of


def plot(results: Results, path: Path) -> None:
    panels = delays(results)
    fig, axes = plt.subplots(1, len(panels), figsize=(7 * len(panels), 5.5), squeeze=False)
    colours = plt.get_cmap("tab10")
    for ax, delay in zip(axes[0], panels, strict=True):
        for index, system in enumerate(TABLE_SYSTEMS):
            steps = steps_of(results, system, delay)
            if not steps:
                continue
            colour = colours(index % 10)
            rates = [s["offered_rate"] for s in steps]
            for pct, style in (("p50", "-"), ("p99", "--")):
                values = [s["latency_ms"].get(pct, float("nan")) for s in steps]
                label = system if pct == "p50" else None
                ax.plot(rates, values, style, color=colour, label=label, linewidth=1.4)
                for rate, value, step in zip(rates, values, steps, strict=True):
                    held = step["sustained"]
                    ax.plot(
                        rate,
                        value,
                        "o" if held else "x",
                        color=colour,
                        markersize=4 if held else 6,
                        markerfacecolor=colour if held else "none",
                    )
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
            axis.set_minor_formatter(NullFormatter())
        ax.set_title(f"upstream delay {delay:g} ms (p50 solid, p99 dashed)")
        ax.set_xlabel("offered rate (calls/s)")
        ax.set_ylabel("latency (ms)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8, loc="best")
    fig.suptitle(f"make bench-compare, {results['started']}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
