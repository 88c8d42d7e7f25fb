"""Timings of validate, render, plan and apply on a large generated state.

Run by hand from the project's root:

    .venv/bin/python bench/bench_reconcile.py [--tenants N --users N --nodes N]

The state is written to a temporary directory in the real layout, every node
is `connection: local` with its root under /tmp/rcb-*, and no process is
placed anywhere, so no supervisord is started. Everything is removed at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from large_state import make_state, write_yaml

from reconciler import render, state
from reconciler.apply import CHANGED, UNCHANGED, NodeResult, reconcile
from reconciler.connections import ConnectOptions

Rows = list[tuple[str, str, str, str]]


def timed(runs: int, func: Callable[[], Any]) -> tuple[list[float], Any]:
    """Call func runs times; the wall times and the last result."""
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - started)
    return times, result


def row(phase: str, times: list[float], target: str = "") -> tuple[str, str, str, str]:
    median = f"{statistics.median(times):.3f}"
    return phase, str(len(times)), f"{median} / {max(times):.3f}", target


def check(results: list[NodeResult], expect: dict[str, set[str]]) -> None:
    """Assert every node succeeded and would write exactly the expected files."""
    for result in results:
        assert result.status in (CHANGED, UNCHANGED), (result.key, result.error)
        written = {step.path for step in result.plan.files}
        assert written == expect.get(result.key, set()), (result.key, written)
        assert not result.plan.processes, (result.key, result.plan.processes)


def bench(args: argparse.Namespace, work: Path, roots: Path) -> tuple[Rows, str]:
    """Time every phase; the table rows and a line about the sizes used."""
    runs, options = args.repeat, ConnectOptions()
    started = time.perf_counter()
    make_state(work, roots, args.instances, args.tenants, args.users, args.nodes)
    written = time.perf_counter() - started
    rows: Rows = []

    load_times, loaded = timed(runs, lambda: state.load(work))
    rows.append(row("validate: `state.load`", load_times))
    render_times, desired = timed(runs, lambda: render.render(loaded))
    rows.append(row("render: `render.render`", render_times))
    both = [a + b for a, b in zip(load_times, render_times, strict=True)]
    rows.append(row("validate + render", both, "< 5 s"))

    def run(apply: bool, nodes: dict) -> list[NodeResult]:
        return reconcile(nodes.values(), options, apply=apply, parallel=args.parallel)

    all_files = {key: set(node.files) for key, node in desired.items()}
    times, results = timed(runs, lambda: run(False, desired))
    check(results, all_files)
    rows.append(row("plan, every node empty", times))
    times, results = timed(1, lambda: run(True, desired))
    check(results, all_files)
    rows.append(row("first apply", times))
    times, results = timed(runs, lambda: run(True, desired))
    check(results, {})
    assert all(r.status == UNCHANGED for r in results), "a second apply changed"
    rows.append(row("second apply (no-op)", times, "< 5 s"))

    # Tenant 0 is on IN1: only IN1's nodes see one file change.
    tenant = work / "tenants/t00000.yaml"
    write_yaml(tenant, yaml.safe_load(tenant.read_text()) | {"name": "Renamed"})
    changed = render.render(state.load(work))
    expect = {k: {"etc/tenants/t00000.json"} for k in changed if k.startswith("IN1/")}
    times, results = timed(runs, lambda: run(False, changed))
    check(results, expect)
    rows.append(row("plan after one tenant changed", times))

    files = len(list(work.rglob("*.yaml")))
    node = next(iter(desired.values()))
    size = sum(len(data) for data in node.files.values()) / 2**20
    sizes = (
        f"state: {files} files, written in {written:.1f} s; each node: "
        f"{len(node.files)} rendered files, {size:.1f} MiB"
    )
    return rows, sizes


def memory(work: Path) -> tuple[float, float]:
    """MiB: the tracemalloc peak of one load + render, and this process's peak RSS."""
    tracemalloc.start()
    render.render(state.load(work))
    traced = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return traced / 2**20, rss / 2**10


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=2)
    parser.add_argument("--tenants", type=int, default=1000)
    parser.add_argument("--users", type=int, default=10_000)
    parser.add_argument("--nodes", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=10, help="nodes at once")
    parser.add_argument("--repeat", type=int, default=3, help="runs of cheap phases")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="rcb-state-"))
    roots = Path(tempfile.mkdtemp(prefix="rcb-", dir="/tmp"))
    try:
        rows, sizes = bench(args, work, roots)
        traced, rss = memory(work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        shutil.rmtree(roots, ignore_errors=True)

    print(
        f"{args.instances} instances, {args.tenants} tenants, {args.users} users, "
        f"{args.nodes} local nodes, --parallel {args.parallel}; "
        f"os.cpu_count() = {os.cpu_count()}; Python {sys.version.split()[0]}"
    )
    print(f"{sizes}\n")
    print("| phase | runs | median / max (s) | target |")
    print("| --- | ---: | ---: | --- |")
    for phase, count, figures, target in rows:
        print(f"| {phase} | {count} | {figures} | {target} |")
    print(f"\ntracemalloc peak, one load + render: {traced:.0f} MiB")
    print(f"peak RSS of this process (ru_maxrss): {rss:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
