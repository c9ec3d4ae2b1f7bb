"""The router against a hand-written Starlette endpoint and the bare echo: paired rate ratios.

    python -m bench.versus [--adapter] [--fanout] [--configs 16x16,256x1]
        [--repeats 5] [--out bench/results/versus.json] [--quick]

The targets are ratios of rates (messages/s): the router at least 1.0 x the `starlette`
contender (the endpoint a FastAPI user writes by hand) and at least 0.85 x the bare ASGI
echo, at 16 x 16 and at 256 x 1 (connections x requests in flight). A rate alone moves with
whatever else the shared machine runs, so each repeat measures every contender at every
configuration, in a seeded order that changes per repeat, and the figure is the median of
the per-repeat ratios (router's rate over the baseline's of the same repeat), quoted with
their range. Server CPU per message (`/proc` ticks, 10 ms each) gives a second ratio that
other load moves less: the baseline's CPU per message over the router's, so above 1.0 means
the router costs less. `--adapter` adds the FastAPI adapter, ratioed the same way.

`--fanout` adds fan-out (`bench/fanout.py`: subscribers x pushes, timed until the last
subscriber has the last push), the same repeats: router over the bare loop (target 0.9 x)
and over python-socketio (target 5 x), by pushes/s and by server CPU per push.

The load average (1 min) is recorded with every run. The JSON goes to
bench/results/versus.json (or `--out`), and the tables are printed in Markdown.
Environment: BENCH_REPEATS (5), BENCH_DURATION (1.5 s), BENCH_WARMUP (0.5 s), and the
fan-out counts of `bench/fanout.py`.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from bench import fanout
from bench._harness import (
    _git,
    contenders,
    env_float,
    env_int,
    median,
    order,
    parse_configs,
    save,
    servers,
)
from bench.apps import CONTENDERS as REPORT_ORDER
from bench.throughput import run_config

CONTENDERS = ["bare", "starlette", "router"]
CONFIGS = "16x16,256x1"
PACKAGES = ("observable_socket_asgi", "fastapi_adapter")
#: the baselines every subject (router, adapter) is divided by, in report order
BASELINES = ["starlette", "bare"]
FANOUT_CONTENDERS = ["bare", "router", "socketio"]
FANOUT_BASELINES = ["bare", "socketio"]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m bench.versus", description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny counts: a smoke run")
    p.add_argument("--adapter", action="store_true", help="add the FastAPI adapter")
    p.add_argument("--fanout", action="store_true", help="add the fan-out ratios")
    p.add_argument("--configs", default=CONFIGS, help="conns x inflight ('' for none)")
    p.add_argument("--repeats", type=int)
    p.add_argument("--out", type=Path, help="the JSON (default bench/results/versus.json)")
    return p


# Arithmetic (pure: tested without a server)


def spread(values: list[float]) -> dict[str, Any]:
    """Median, range and count of `values`."""
    return {
        "median": median(values),
        "min": min(values, default=float("nan")),
        "max": max(values, default=float("nan")),
        "n": len(values),
    }


def paired(
    by_repeat: dict[int, dict[str, float]], subject: str, baseline: str, invert: bool = False
) -> list[float]:
    """Per repeat, `subject`'s value over `baseline`'s of the same repeat (the other way
    round with `invert`: for costs, where less is better); repeats missing either are left out."""
    ratios = []
    for values in by_repeat.values():
        a, b = values.get(subject), values.get(baseline)
        if a and b:
            ratios.append(b / a if invert else a / b)
    return ratios


def summarise(
    runs: list[dict[str, Any]],
    group: str,
    rate: str,
    cost: str,
    subjects: list[str],
    baselines: list[str],
) -> dict[str, Any]:
    """Per group (a configuration, or fan-out): each contender's median rate and cost, and
    each subject's paired ratios to each baseline, by rate and by cost; contenders in report
    order (`bench.apps.CONTENDERS`)."""
    out: dict[str, Any] = {}
    for key in dict.fromkeys(run[group] for run in runs):
        mine = [run for run in runs if run[group] == key]
        rates: dict[int, dict[str, float]] = {}
        costs: dict[int, dict[str, float]] = {}
        for run in mine:
            rates.setdefault(run["repeat"], {})[run["contender"]] = run[rate]
            if run.get(cost):
                costs.setdefault(run["repeat"], {})[run["contender"]] = run[cost]
        names = sorted({run["contender"] for run in mine}, key=_report_rank)
        out[key] = {
            "contenders": {
                name: {
                    rate: spread([r[rate] for r in mine if r["contender"] == name]),
                    cost: spread([r[cost] for r in mine if r["contender"] == name and r.get(cost)]),
                }
                for name in names
            },
            "ratios": [
                {
                    "subject": subject,
                    "baseline": baseline,
                    "by_rate": spread(paired(rates, subject, baseline)),
                    "by_cost": spread(paired(costs, subject, baseline, invert=True)),
                }
                for subject in subjects
                if subject in names
                for baseline in baselines
                if baseline in names and baseline != subject
            ],
            "loadavg": spread([r["loadavg"] for r in mine if "loadavg" in r]),
        }
    return out


def _report_rank(name: str) -> tuple[int, str]:
    return (REPORT_ORDER.index(name) if name in REPORT_ORDER else len(REPORT_ORDER), name)


def _range(s: dict[str, Any], fmt: str) -> str:
    return f"{s['median']:{fmt}} ({s['min']:{fmt}}-{s['max']:{fmt}})"


def markdown(summary: dict[str, Any], rate: str, cost: str, unit: str) -> list[str]:
    """Two tables per summary: the medians per contender, then the paired ratios."""
    lines = [
        f"| config | contender | {unit}/s median (range) | server CPU us per {unit} "
        "| load average (1 min) |",
        "|---|---|---|---|---|",
    ]
    for key, part in summary.items():
        load = _range(part["loadavg"], ".2f") if part["loadavg"]["n"] else "-"
        for name, s in part["contenders"].items():
            cpu = _range(s[cost], ".1f") if s[cost]["n"] else "-"
            lines.append(f"| {key} | {name} | {_range(s[rate], ',.0f')} | {cpu} | {load} |")
    lines += [
        "",
        "| config | ratio | by rate: median (range) | by server CPU per "
        f"{unit}: median (range) | repeats |",
        "|---|---|---|---|---|",
    ]
    for key, part in summary.items():
        for r in part["ratios"]:
            by_cost = _range(r["by_cost"], ".2f") if r["by_cost"]["n"] else "-"
            lines.append(
                f"| {key} | {r['subject']} / {r['baseline']} | {_range(r['by_rate'], '.2f')} "
                f"| {by_cost} | {r['by_rate']['n']} |"
            )
    return lines


# Running


def run_rates(
    names: list[str], configs: list[tuple[int, int]], repeats: int, duration: float, warmup: float
) -> list[dict[str, Any]]:
    """Every contender at every configuration, once per repeat, in a changing order."""
    runs: list[dict[str, Any]] = []
    with servers(names) as running:
        for repeat in range(repeats):
            for conns, inflight in order(configs, repeat):
                for name in order(names, repeat * 100 + conns + inflight):
                    result = run_config(running[name], conns, inflight, "echo", duration, warmup)
                    result.update(
                        contender=name,
                        conns=conns,
                        inflight=inflight,
                        config=f"{conns}x{inflight}",
                        repeat=repeat,
                    )
                    runs.append(result)
                    print(
                        f"r{repeat} {conns:>3}x{inflight:<2} {name:<10} "
                        f"{result['rate']:>9.0f} msg/s  "
                        f"server {result['server_us_per_msg'] or 0:5.1f} us/msg"
                        f"  cpu server {result['server_cpu']:.0%}"
                        f" client {result['client_cpu']:.0%}  load {result['loadavg']:.2f}",
                        flush=True,
                    )
    return runs


def run_fanouts(
    names: list[str], repeats: int, subscribers: int, pushes: int, rounds: int
) -> list[dict[str, Any]]:
    """Every fan-out contender once per repeat, in a changing order."""
    runs: list[dict[str, Any]] = []
    with fanout.started(names) as running:
        for repeat in range(repeats):
            for name in order(names, repeat):
                result = fanout.run_fanout(running[name], subscribers, pushes, rounds)
                result.update(
                    contender=name,
                    repeat=repeat,
                    group=f"fan-out {subscribers} x {pushes}",
                    subscribers=subscribers,
                    pushes=pushes,
                    loadavg=os.getloadavg()[0],
                )
                runs.append(result)
                print(
                    f"r{repeat} fan-out {name:<9} {subscribers} x {pushes}: "
                    f"{result['pushes_per_s']:>9.0f} pushes/s"
                    f"  server {result['server_us_per_frame']:5.1f} us/push"
                    f"  load {result['loadavg']:.2f}",
                    flush=True,
                )
    return runs


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    if args.quick:
        os.environ["BENCH_QUICK"] = "1"
    repeats = args.repeats or env_int("BENCH_REPEATS", 5, 1)
    duration = env_float("BENCH_DURATION", 1.5, 0.2)
    warmup = env_float("BENCH_WARMUP", 0.5, 0.1)
    configs = parse_configs(args.configs)
    subjects = ["router", "adapter"] if args.adapter else ["router"]
    data: dict[str, Any] = {
        "repeats": repeats,
        "duration": duration,
        "warmup": warmup,
        # the last change to the code measured: the bench itself moves more often
        "package_commit": _git("log", "-1", "--format=%h", "--", *PACKAGES),
    }
    tables: list[str] = []

    if configs:
        names, missing = contenders([*CONTENDERS, *subjects[1:]])
        runs = run_rates(names, configs, repeats, duration, warmup)
        summary = summarise(runs, "config", "rate", "server_us_per_msg", subjects, BASELINES)
        # in the order asked for, not the order the first repeat happened to measure them
        summary = {f"{c}x{k}": summary[f"{c}x{k}"] for c, k in configs if f"{c}x{k}" in summary}
        data.update(runs=runs, missing=missing, configs=args.configs, summary=summary)
        tables += markdown(summary, "rate", "server_us_per_msg", "msg")

    if args.fanout:
        subscribers = env_int("BENCH_FANOUT_SUBSCRIBERS", 1000, 20)
        pushes = env_int("BENCH_FANOUT_PUSHES", 100, 5)
        rounds = env_int("BENCH_FANOUT_ROUNDS", 3, 1)
        names, missing = contenders(FANOUT_CONTENDERS)
        runs = run_fanouts(names, repeats, subscribers, pushes, rounds)
        summary = summarise(
            runs, "group", "pushes_per_s", "server_us_per_frame", ["router"], FANOUT_BASELINES
        )
        data["fanout"] = {
            "runs": runs,
            "missing": missing,
            "subscribers": subscribers,
            "pushes": pushes,
            "rounds": rounds,
            "summary": summary,
        }
        if tables:
            tables.append("")
        tables += markdown(summary, "pushes_per_s", "server_us_per_frame", "push")

    path = save("versus", data, args.out)
    print("\n".join(["", *tables, ""]))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
