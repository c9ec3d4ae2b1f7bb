"""Turn `bench/results/*.json` into Markdown tables and `bench/results.png`.

    python -m bench.report

Every throughput and latency figure is a ratio to the bare echo app measured in the same
repeat of the same run; the tables quote the median of those ratios over the repeats.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench._harness import RESULTS, ROOT, median
from bench.apps import CONTENDERS, LABELS
from bench.hooks_cost import typed_ratio

PLOT = ROOT / "bench" / "results.png"


def _load(name: str) -> dict[str, Any] | None:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def _fmt(value: float | None, spec: str = ".2f", suffix: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:{spec}}{suffix}"


def _ratios(runs: list[dict[str, Any]], key: Any, group: Any) -> dict[Any, dict[str, float]]:
    """Median over repeats of value / bare's value in the same repeat and group."""
    base: dict[tuple[Any, int], float] = {}
    for run in runs:
        if run["contender"] == "bare" and run.get("route", "echo") == "echo":
            base[(group(run), run["repeat"])] = key(run)
    out: dict[Any, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        ref = base.get((group(run), run["repeat"]))
        value = key(run)
        if ref and value is not None:
            out[group(run)][_name(run)].append(value / ref)
    return defaultdict(dict, {g: {n: median(v) for n, v in row.items()} for g, row in out.items()})


def _name(run: dict[str, Any]) -> str:
    route = run.get("route", "echo")
    return run["contender"] if route == "echo" else f"{run['contender']}:{route}"


def _medians(runs: list[dict[str, Any]], key: Any, group: Any) -> dict[Any, dict[str, float]]:
    out: dict[Any, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for run in runs:
        value = key(run)
        if value is not None:
            out[group(run)][_name(run)].append(value)
    return defaultdict(dict, {g: {n: median(v) for n, v in row.items()} for g, row in out.items()})


def _versus(runs: list[dict[str, Any]], cfg: str, a: str, b: str, key: str) -> float:
    """Median over repeats of a's `key` / b's `key` at configuration `cfg`."""
    by: dict[tuple[str, int], float] = {
        (r["contender"], r["repeat"]): r.get(key) or float("nan") for r in runs if _config(r) == cfg
    }
    repeats = {r["repeat"] for r in runs}
    ratios = [by[(a, i)] / by[(b, i)] for i in repeats if (a, i) in by and (b, i) in by]
    return median(ratios)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _config(run: dict[str, Any]) -> str:
    return f"{run['conns']}x{run['inflight']}"


def throughput_section(data: dict[str, Any], plot: dict[str, dict[str, float]]) -> list[str]:
    runs = data["runs"]
    names = [n for n in CONTENDERS if any(r["contender"] == n for r in runs)]
    configs = list(dict.fromkeys(_config(r) for r in runs))
    rate = _ratios(runs, lambda r: r["rate"], _config)
    p50 = _ratios(runs, lambda r: r["latency_ms"]["p50"], _config)
    p99 = _ratios(runs, lambda r: r["latency_ms"]["p99"], _config)
    cost = _ratios(runs, lambda r: r.get("server_us_per_msg"), _config)
    absolute = _medians(runs, lambda r: r["rate"], _config)
    bare_p99 = _medians(runs, lambda r: r["latency_ms"]["p99"], _config)
    us = _medians(runs, lambda r: r.get("server_us_per_msg"), _config)
    ccpu = _medians(runs, lambda r: r["client_cpu"], _config)
    scpu = _medians(runs, lambda r: r.get("server_cpu"), _config)
    out = [
        f"Repeats: {data['repeats']}, {data['duration']} s measured after "
        f"{data['warmup']} s warm-up per run.",
        "",
    ]
    out.append("**Throughput, ratio to bare echo** (higher is better; bare in msg/s)")
    out.append("")
    rows = []
    for cfg in configs:
        row = [cfg, _fmt(absolute[cfg].get("bare"), ",.0f")]
        row += [_fmt(rate[cfg].get(n)) for n in names if n != "bare"]
        rows.append(row)
        for n in names:
            plot.setdefault(n, {})[cfg] = rate[cfg].get(n, float("nan"))
    out += _table(["N x K", "bare msg/s", *[n for n in names if n != "bare"]], rows)
    out += [
        "",
        "**This project over the original package** (msg/s ratio per repeat, median; "
        "in brackets: the original's server CPU per message over ours)",
        "",
    ]
    rows = []
    for cfg in configs:
        row = [cfg]
        for name in ("router", "adapter"):
            row.append(
                f"{_fmt(_versus(runs, cfg, name, 'original', 'rate'))} "
                f"({_fmt(_versus(runs, cfg, 'original', name, 'server_us_per_msg'))})"
            )
        rows.append(row)
    out += _table(["N x K", "router / original", "adapter / original"], rows)
    out += [
        "",
        "**Server CPU per message, ratio to bare echo** (lower is better; robust to "
        "other load on the machine; bare in us/msg)",
        "",
    ]
    rows = [
        [cfg, _fmt(us[cfg].get("bare"), ".1f")]
        + [_fmt(cost[cfg].get(n)) for n in names if n != "bare"]
        for cfg in configs
    ]
    out += _table(["N x K", "bare us/msg", *[n for n in names if n != "bare"]], rows)
    out += ["", "**Latency p50 / p99, ratio to bare echo** (lower is better; bare p99 in ms)", ""]
    rows = [
        [cfg, _fmt(bare_p99[cfg].get("bare"), ".2f")]
        + [f"{_fmt(p50[cfg].get(n))} / {_fmt(p99[cfg].get(n))}" for n in names if n != "bare"]
        for cfg in configs
    ]
    out += _table(["N x K", "bare p99 ms", *[n for n in names if n != "bare"]], rows)
    out += [
        "",
        "**CPU use during the measured window** (fraction of one core, median over "
        "contenders and repeats): load generator / server",
        "",
    ]
    rows = [
        [
            cfg,
            _fmt(median(list(ccpu[cfg].values())), ".0%"),
            _fmt(max(ccpu[cfg].values()), ".0%"),
            _fmt(median([v for v in scpu[cfg].values() if v is not None]), ".0%"),
        ]
        for cfg in configs
    ]
    out += _table(["N x K", "client median", "client max", "server median"], rows)
    return out


def hol_section(data: dict[str, Any]) -> list[str]:
    runs = data["runs"]
    names = [n for n in CONTENDERS if any(r["contender"] == n for r in runs)]
    total = _medians(runs, lambda r: r["total_ms"], lambda r: 0)[0]
    fast99 = _medians(runs, lambda r: r["fast_ms"]["p99"], lambda r: 0)[0]
    fast50 = _medians(runs, lambda r: r["fast_ms"]["p50"], lambda r: 0)[0]
    count = _medians(runs, lambda r: r["fast_count"], lambda r: 0)[0]
    rows = [
        [
            n,
            _fmt(total[n], ".1f"),
            _fmt(count[n], ".0f"),
            _fmt(fast50[n], ".2f"),
            _fmt(fast99[n], ".2f"),
            "yes" if fast99[n] < 5 else "no",
        ]
        for n in names
    ]
    return _table(
        [
            "contender",
            "total ms (16 x 50 ms slow)",
            "fast answered",
            "fast p50 ms",
            "fast p99 ms",
            "p99 < 5 ms",
        ],
        rows,
    )


def hooks_section(data: dict[str, Any], plot: dict[str, dict[str, float]]) -> list[str]:
    runs = data["runs"]
    rate = _ratios(runs, lambda r: r["rate"], lambda r: 0)[0]
    cost = _medians(runs, lambda r: r.get("server_us_per_msg"), lambda r: 0)[0]
    rows = []
    for name in ("original", "router", "adapter"):
        if name not in rate:
            continue
        hooks = rate.get(f"{name}:hooks")
        typed = rate.get(f"{name}:typed")
        rows.append(
            [
                name,
                _fmt(rate[name]),
                _fmt(hooks),
                _fmt(cost.get(name), ".1f"),
                _fmt(cost.get(f"{name}:hooks"), ".1f"),
                _fmt((cost.get(f"{name}:hooks") or 0) - (cost.get(name) or 0), "+.1f"),
                _fmt(typed_ratio(runs, name)),
                _fmt(
                    (cost.get(f"{name}:typed") or 0) - (cost.get(name) or 0)
                    if typed is not None
                    else None,
                    "+.1f",
                ),
            ]
        )
        plot.setdefault(name, {})["hooks 16x16"] = hooks if hooks is not None else float("nan")
    plot.setdefault("bare", {})["hooks 16x16"] = 1.0
    return _table(
        [
            "contender",
            "echo / bare",
            "hooks / bare",
            "echo us/msg",
            "hooks us/msg",
            "hooks cost us/msg",
            "typed / echo",
            "typed cost us/msg",
        ],
        rows,
    )


def memory_section(data: dict[str, Any]) -> list[str]:
    runs = data["runs"]
    names = [n for n in CONTENDERS if any(r["contender"] == n for r in runs)]
    steps = [str(s) for s in data["steps"][1:]]
    per = {
        n: {
            s: median([float(r["kib_per_conn"][s]) for r in runs if r["contender"] == n])
            for s in steps
        }
        for n in names
    }
    rows = []
    for n in names:
        row = [n]
        for s in steps:
            over = per[n][s] - per["bare"][s] if "bare" in per else float("nan")
            row.append(f"{per[n][s]:.1f} ({over:+.1f})")
        rows.append(row)
    return _table(["contender", *[f"KiB/conn at {s} (over bare)" for s in steps]], rows)


def slow_section(data: dict[str, Any]) -> list[str]:
    rows = []
    for run in data["runs"]:
        code = run["close_code"]
        ended = {None: "kept open", 1013: "closed 1013"}.get(code, f"closed {code}")
        rows.append(
            [
                run["contender"],
                _fmt(run["growth_first_half_kib"] / 1024, ".1f"),
                _fmt(run["peak_growth_kib"] / 1024, ".1f"),
                ended,
            ]
        )
    return _table(
        [
            "contender",
            f"RSS growth after {data['seconds'] / 2:g} s, MiB",
            f"peak RSS growth over {data['seconds']:g} s, MiB",
            "connection",
        ],
        rows,
    )


def draw(plot: dict[str, dict[str, float]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in CONTENDERS if n in plot]
    groups = list(dict.fromkeys(g for n in names for g in plot[n]))
    width = 0.8 / max(1, len(names))
    fig, ax = plt.subplots(figsize=(10, 3.6), dpi=72)
    for i, name in enumerate(names):
        xs = [j + (i - (len(names) - 1) / 2) * width for j in range(len(groups))]
        ys = [plot[name].get(g, float("nan")) for g in groups]
        ax.bar(xs, ys, width, label=name)
    ax.axhline(0.8, color="black", linewidth=0.8, linestyle="--")
    ax.set_xticks(range(len(groups)), groups, fontsize=8)
    ax.set_ylabel("throughput / bare echo")
    ax.set_title(
        "Messages per second as a ratio to the bare ASGI echo app (dashed: 0.8 target)", fontsize=9
    )
    ax.set_ylim(0, 1.3)
    ax.legend(fontsize=7, ncol=len(names), loc="upper center", frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def main() -> None:
    out: list[str] = []
    plot: dict[str, dict[str, float]] = {}
    machine = None
    sections: list[tuple[str, str, Any]] = [
        (
            "throughput",
            "1. Throughput and latency (echo route)",
            lambda d: throughput_section(d, plot),
        ),
        ("head_of_line", "2. Head-of-line blocking (one connection)", hol_section),
        ("hooks_cost", "3. Hooks cost (16 x 16)", lambda d: hooks_section(d, plot)),
        ("idle_memory", "4. Idle memory", memory_section),
        ("slow_consumer", "5. Slow consumer", slow_section),
    ]
    for name, title, section in sections:
        data = _load(name)
        if data is None:
            continue
        machine = data["machine"]
        out += [f"### {title}", "", *section(data)]
        if data.get("missing"):
            missing = "; ".join(f"{k}: {v}" for k, v in data["missing"].items())
            out += ["", f"Not measured: {missing}"]
        out.append("")
    if machine is not None:
        out = [
            f"Machine: {json.dumps(machine)}",
            "",
            "Contenders: " + "; ".join(f"`{k}` = {v}" for k, v in LABELS.items()),
            "",
            *out,
        ]
    text = "\n".join(out)
    (RESULTS / "tables.md").write_text(text)
    print(text)
    if plot:
        draw(plot, PLOT)
        print(f"\nwrote {PLOT} ({PLOT.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    main()
