"""Latency and throughput of the /1.0 admin API served by `reconcile serve`.

Run by hand from the project's root:

    .venv/bin/python bench/bench_api.py [--quick] [--users N --tenants N ...]

A state is generated in a temporary directory, `reconcile serve --no-commit`
is started on it, and a Bottle hello-world app on the same WSGI server and
thread count is started beside it as the baseline. Client processes drive
each scenario over keep-alive connections; every answer must be a 200 with
the expected content, or the scenario is reported as failed. The table goes
to stdout, progress to stderr. Servers and files are removed at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import logging
import math
import multiprocessing
import os
import queue
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from large_state import make_state, tenant_id, user_email

log = logging.getLogger("bench_api")

ROOT = Path(__file__).resolve().parent.parent
RECONCILE = ROOT / ".venv" / "bin" / "reconcile"
INSTANCES, NODES = 2, 2
HELLO = "Hello, world!"
THREADS = 10  # cheroot's own default, when reconcile serve names none
READY_TIMEOUT = 300.0  # seconds for `reconcile serve` to load the state
WARMUP = 20  # untimed requests per client before each scenario
# Sizes of a full run (the targets' own) and of a --quick smoke run.
FULL = {"users": 10_000, "tenants": 1000, "requests": 2000, "list_requests": 30}
QUICK = {"users": 1000, "tenants": 100, "requests": 300, "list_requests": 10}

# method, path, JSON body or None, and a needle the answer must hold count times
Request = tuple[str, str, bytes | None, bytes, int]


class BenchError(Exception):
    """The benchmark cannot go on; the message says why."""


# ---- servers ---------------------------------------------------------------


def project_threads() -> int:
    """The worker thread count `reconcile serve` gives cheroot by default."""
    try:
        from reconciler.cli import cli

        command = cli.commands["serve"]  # type: ignore[attr-defined]
        option = next(p for p in command.params if p.name == "threads")
        return int(option.default)
    except (ImportError, KeyError, StopIteration, TypeError, ValueError):
        log.warning("no --threads default in reconcile serve; using %d", THREADS)
        return THREADS


def serve_hello(port: int, threads: int) -> None:
    """Serve a one-route Bottle app on cheroot until terminated (child process)."""
    import bottle
    from cheroot import wsgi

    quiet_child()
    app = bottle.Bottle()
    app.route("/hello")(lambda: HELLO)
    wsgi.Server(("127.0.0.1", port), app, numthreads=threads).start()


def quiet_child() -> None:
    """In a child: leave Ctrl-C to the benchmark, which stops its children."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def free_port() -> int:
    """A loopback port nothing listens on at the moment."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(port: int, path: str, alive: Any, timeout: float) -> float:
    """Poll until the port answers an HTTP request; the seconds it took.

    alive() must return False once the server process has exited.
    """
    started = time.perf_counter()
    deadline = started + timeout
    while True:
        if not alive():
            raise BenchError(f"the server for port {port} exited before answering")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", path)
            conn.getresponse().read()
            conn.close()
            return time.perf_counter() - started
        except OSError:
            if time.perf_counter() > deadline:
                message = f"nothing answered on port {port} in {timeout} s"
                raise BenchError(message) from None
            time.sleep(0.05)


def stop(proc: subprocess.Popen | multiprocessing.Process | None, name: str) -> None:
    """Terminate a process, then kill it if it does not exit in 10 s."""
    if proc is None:
        return
    if isinstance(proc, subprocess.Popen):
        if proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(10)
            return
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    else:
        if not proc.is_alive():
            return
        proc.terminate()
        proc.join(10)
        if not proc.is_alive():
            return
        proc.kill()
        proc.join()
    log.warning("%s did not exit within 10 s of SIGTERM; killed", name)


def peak_rss_mib(pid: int) -> float | None:
    """The peak resident size of a live process (Linux), or None."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return None


# ---- clients ---------------------------------------------------------------


@dataclass
class ClientResult:
    latencies: list[float] = field(default_factory=list)
    started: float = 0.0
    ended: float = 0.0
    failures: int = 0
    first_failure: str = ""
    reconnects: int = 0


def send(conn: http.client.HTTPConnection, request: Request) -> tuple[int, bytes]:
    method, path, body, _, _ = request
    headers = {"Content-Type": "application/json"} if body is not None else {}
    conn.request(method, path, body=body, headers=headers)
    response = conn.getresponse()
    return response.status, response.read()


def failure(request: Request, status: int, body: bytes) -> str | None:
    """Why this answer is wrong, or None when it is a 200 with the content."""
    method, path, _, needle, count = request
    if status != 200:
        return f"{method} {path}: {status} {body.strip()[:200]!r}"
    if body.count(needle) < count:
        return (
            f"{method} {path}: 200 without {count} x {needle!r}: {body.strip()[:200]!r}"
        )
    return None


def run_client(
    port: int,
    warmup: list[Request],
    requests: list[Request],
    barrier: Any,
    results: Any,
) -> None:
    """Send requests over one keep-alive connection; put a ClientResult."""
    quiet_child()
    result = ClientResult()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        for request in warmup:
            reason = failure(request, *send(conn, request))
            if reason:
                raise RuntimeError(f"warm-up: {reason}")
        barrier.wait(timeout=300)

        result.started = time.perf_counter()
        for request in requests:
            if conn.sock is None:
                result.reconnects += 1
            began = time.perf_counter()
            status, body = send(conn, request)
            result.latencies.append(time.perf_counter() - began)
            reason = failure(request, status, body)
            if reason:
                result.failures += 1
                result.first_failure = result.first_failure or reason
        result.ended = time.perf_counter()
        conn.close()
    except Exception as exc:  # reported by the parent as a failed scenario
        barrier.abort()
        result.failures += 1
        result.first_failure = f"{type(exc).__name__}: {exc}"
    results.put(result)


@dataclass
class Outcome:
    name: str
    requests: int
    latencies: list[float]
    seconds: float
    failures: int
    first_failure: str

    @property
    def ok(self) -> bool:
        return self.failures == 0 and bool(self.latencies)

    def median_ms(self) -> float:
        return statistics.median(self.latencies) * 1000

    def p99_ms(self) -> float:
        # nearest rank: the smallest latency at or above 99 % of them
        ordered = sorted(self.latencies)
        return ordered[math.ceil(0.99 * len(ordered)) - 1] * 1000

    def per_second(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


def run_scenario(scenario: Scenario, port: int) -> Outcome:
    """Split the requests over client processes started together; their outcome."""
    clients = scenario.clients
    context = multiprocessing.get_context()
    barrier, results = context.Barrier(clients), context.Queue()
    procs = []
    for c in range(clients):
        warmup, share = scenario.warmup[c::clients], scenario.requests[c::clients]
        args = (port, warmup, share, barrier, results)
        procs.append(context.Process(target=run_client, args=args, daemon=True))
    collected: list[ClientResult] = []
    try:
        for proc in procs:
            proc.start()
        while len(collected) < clients:
            try:
                collected.append(results.get(timeout=1))
            except queue.Empty:
                if not any(proc.is_alive() for proc in procs) and results.empty():
                    break
    finally:
        for proc in procs:
            stop(proc, "a client")

    latencies = [t for result in collected for t in result.latencies]
    failures = sum(result.failures for result in collected)
    first = next((r.first_failure for r in collected if r.first_failure), "")
    if len(collected) < clients:
        failures += clients - len(collected)
        first = first or "a client process died without a result"
    reconnects = sum(result.reconnects for result in collected)
    if reconnects:
        log.warning("  %d reconnects: keep-alive was not kept", reconnects)
    timed = [r for r in collected if r.ended]
    seconds = (
        max(r.ended for r in timed) - min(r.started for r in timed) if timed else 0
    )
    requests = len(scenario.requests)
    return Outcome(scenario.name, requests, latencies, seconds, failures, first)


# ---- scenarios -------------------------------------------------------------


@dataclass
class Scenario:
    key: str  # "hello" runs against the hello-world server, the rest the API
    name: str
    requests: list[Request]
    warmup: list[Request]
    clients: int


def scenarios(args: argparse.Namespace) -> list[Scenario]:
    """Every scenario, in the order they run; the PUTs last, as they edit."""
    rng = random.Random(2)
    n, clients, warm = args.requests, args.clients, WARMUP * args.clients

    def users(count: int) -> list[Request]:
        emails = (user_email(rng.randrange(args.users)) for _ in range(count))
        return [("GET", f"/1.0/users/{e}", None, quoted(e), 1) for e in emails]

    def tenants(count: int) -> list[Request]:
        ids = (tenant_id(rng.randrange(args.tenants)) for _ in range(count))
        return [("GET", f"/1.0/tenants/{t}", None, quoted(t), 1) for t in ids]

    def renames(count: int, prefix: str) -> list[Request]:
        requests: list[Request] = []
        for k in range(count):
            email, name = user_email(rng.randrange(args.users)), f"{prefix} {k}"
            body = json.dumps({"name": name}).encode()
            requests.append(("PUT", f"/1.0/users/{email}", body, quoted(name), 1))
        return requests

    hello: Request = ("GET", "/hello", None, HELLO.encode(), 1)
    everyone: Request = ("GET", "/1.0/users", None, b'"email"', args.users)
    return [
        Scenario(
            "hello",
            "hello world (Bottle on cheroot)",
            [hello] * n,
            [hello] * warm,
            clients,
        ),
        Scenario("user", "GET /1.0/users/{email}", users(n), users(warm), clients),
        Scenario("tenant", "GET /1.0/tenants/{id}", tenants(n), tenants(warm), clients),
        Scenario(
            "list",
            f"GET /1.0/users (all {args.users}), 1 client",
            [everyone] * args.list_requests,
            [everyone],
            1,
        ),
        Scenario(
            "put",
            "PUT /1.0/users/{email} (name, no git)",
            renames(n, "Bench"),
            renames(warm, "Warm-up"),
            clients,
        ),
    ]


def quoted(text: str) -> bytes:
    """text as a JSON string, as an answer that holds it must contain it."""
    return json.dumps(text).encode()


# ---- report ----------------------------------------------------------------


# The stated targets, in milliseconds.
GET_P99, PUT_P99, LIST_MS, RATIO = 10.0, 50.0, 300.0, 0.5


def verdicts(outcomes: dict[str, Outcome]) -> dict[str, tuple[str, str]]:
    """(target, "pass" or why it fails) of each scenario with a target.

    A scenario that failed meets none of its targets, nor does the throughput
    target when the baseline failed.
    """
    hello, user = outcomes["hello"], outcomes["user"]
    ratio = user.per_second() / hello.per_second() if hello.ok and user.ok else 0.0

    def judge(outcome: Outcome, checks: list[tuple[str, bool]]) -> str:
        if not outcome.ok:
            return "FAIL: requests failed"
        missed = [what for what, met in checks if not met]
        return "FAIL: " + ", ".join(missed) if missed else "pass"

    def get_one(o: Outcome) -> str:
        return judge(o, [("p99", o.ok and o.p99_ms() < GET_P99)])

    listing, put = outcomes["list"], outcomes["put"]
    user_target = f"p99 < {GET_P99:g} ms; req/s >= {RATIO:g} x hello's"
    if hello.ok and user.ok:
        user_target += f" (ratio {ratio:.2f})"
    user_checks = [
        ("p99", user.ok and user.p99_ms() < GET_P99),
        ("req/s", hello.ok and ratio >= RATIO),
    ]
    list_checks = [
        ("median", listing.ok and listing.median_ms() < LIST_MS),
        ("p99", listing.ok and listing.p99_ms() < LIST_MS),
    ]
    return {
        "hello": ("baseline", ""),
        "user": (user_target, judge(user, user_checks)),
        "tenant": (f"p99 < {GET_P99:g} ms", get_one(outcomes["tenant"])),
        "list": (f"median and p99 < {LIST_MS:g} ms", judge(listing, list_checks)),
        "put": (
            f"p99 < {PUT_P99:g} ms",
            judge(put, [("p99", put.ok and put.p99_ms() < PUT_P99)]),
        ),
    }


def report(outcomes: dict[str, Outcome], header: str) -> bool:
    """The results, in Markdown, on stdout; whether every target was met."""
    print(header + "\n")
    print("| case | requests | median ms | p99 ms | req/s | target | pass/fail |")
    print("| --- | ---: | ---: | ---: | ---: | --- | --- |")
    judged = verdicts(outcomes)
    for key, o in outcomes.items():
        if o.ok:
            figures = f"{o.median_ms():.2f} | {o.p99_ms():.2f} | {o.per_second():.0f}"
        else:
            figures = f"FAILED: {o.failures} failures | | "
        target, verdict = judged[key]
        print(f"| {o.name} | {o.requests} | {figures} | {target} | {verdict} |")

    hello, user = outcomes["hello"], outcomes["user"]
    if hello.ok and user.ok:
        ratio = user.per_second() / hello.per_second()
        print(f"\nGET one user / hello world throughput: {ratio:.2f}")
    for o in outcomes.values():
        if not o.ok:
            print(f"\n{o.name}: {o.failures} failures; first: {o.first_failure}")
    return all(v in ("", "pass") for _, v in judged.values())


# ---- main ------------------------------------------------------------------


def tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def bench(args: argparse.Namespace, work: Path) -> int:
    """Generate, start both servers, run every scenario, report; the exit code."""
    state_dir, serve_log = work / "state", work / "serve.log"
    log.info("writing the state under %s", state_dir)
    started = time.perf_counter()
    make_state(state_dir, work / "roots", INSTANCES, args.tenants, args.users, NODES)
    log.info("state written in %.1f s", time.perf_counter() - started)

    threads = args.threads or project_threads()
    hello_port = free_port()
    api_port = free_port()
    while api_port == hello_port:
        api_port = free_port()

    hello: multiprocessing.Process | None = None
    api: subprocess.Popen | None = None
    try:
        hello = multiprocessing.Process(
            target=serve_hello, args=(hello_port, threads), daemon=True
        )
        hello.start()
        command = [str(RECONCILE), "serve", str(state_dir), "--host", "127.0.0.1"]
        command += ["--port", str(api_port), "--threads", str(threads), "--no-commit"]
        log.info("starting %s", " ".join(command))
        with serve_log.open("wb") as output:
            api = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,  # Ctrl-C reaches us; we stop it
            )
        wait_for_http(hello_port, "/hello", hello.is_alive, 30)
        probe = f"/1.0/tenants/{tenant_id(0)}"
        try:
            ready = wait_for_http(
                api_port, probe, lambda: api.poll() is None, READY_TIMEOUT
            )
        except BenchError:
            log.error("reconcile serve's log ends:\n%s", tail(serve_log))
            raise
        log.info("reconcile serve answered %.1f s after its start", ready)

        outcomes: dict[str, Outcome] = {}
        for scenario in scenarios(args):
            port = hello_port if scenario.key == "hello" else api_port
            log.info(
                "%s: %d requests, %d client processes",
                scenario.name,
                len(scenario.requests),
                scenario.clients,
            )
            outcome = run_scenario(scenario, port)
            outcomes[scenario.key] = outcome
            if outcome.ok:
                log.info(
                    "  median %.2f ms, p99 %.2f ms, %.0f req/s",
                    outcome.median_ms(),
                    outcome.p99_ms(),
                    outcome.per_second(),
                )
            else:
                log.error(
                    "  %d failures; first: %s",
                    outcome.failures,
                    outcome.first_failure,
                )
        rss = peak_rss_mib(api.pid)
    finally:
        stop(api, "reconcile serve")
        stop(hello, "the hello-world server")

    failed = [o for o in outcomes.values() if not o.ok]
    if failed:
        log.error("reconcile serve's log ends:\n%s", tail(serve_log))
    header = (
        f"{INSTANCES} instances, {args.tenants} tenants, {args.users} users; "
        f"cheroot numthreads={threads} in both servers; load: {args.clients} "
        "client processes, one keep-alive http.client connection each; "
        f"os.cpu_count() = {os.cpu_count()}; Python {sys.version.split()[0]}\n"
        f"reconcile serve answered {ready:.1f} s after its start"
    )
    if rss is not None:
        header += f"; its peak RSS: {rss:.0f} MiB"
    if not report(outcomes, header):
        log.warning("some targets were not met (see the table)")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: sizes of QUICK unless given (not the targets' sizes)",
    )
    parser.add_argument("--users", type=int, help="default 10000")
    parser.add_argument("--tenants", type=int, help="default 1000")
    parser.add_argument(
        "--requests", type=int, help="per scenario, over all clients; default 2000"
    )
    parser.add_argument(
        "--list-requests", type=int, help="GET /1.0/users, one client; default 30"
    )
    parser.add_argument("--clients", type=int, default=2, help="client processes")
    parser.add_argument(
        "--threads", type=int, help="server threads (default: reconcile serve's)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the state and log")
    args = parser.parse_args(argv)
    for name, value in (QUICK if args.quick else FULL).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if min(args.users, args.tenants, args.requests, args.list_requests) < 1:
        parser.error("every size must be at least 1")
    if args.clients < 1 or (args.threads is not None and args.threads < 1):
        parser.error("--clients and --threads must be at least 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s", stream=sys.stderr)

    # SIGTERM unwinds like Ctrl-C, so that the servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    work = Path(tempfile.mkdtemp(prefix="rcb-api-"))
    try:
        return bench(args, work)
    except BenchError as exc:
        log.error("Error: %s", exc)
        return 1
    except KeyboardInterrupt:
        log.error("interrupted")
        return 130
    finally:
        if args.keep:
            log.info("kept %s", work)
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
