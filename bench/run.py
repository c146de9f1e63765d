"""Run the fan-out benchmark: the textbook reference and the hub, in one invocation.

    .venv/bin/python -m bench.run                       # every scenario, both servers
    .venv/bin/python -m bench.run --scenarios big --big-rates 1,10,40

For each scenario and each server, in turn (never both under load at once):
seed what is missing in the benchmark database, start a fresh daphne process
(``bench.reference.asgi`` or the project's ``spotify_agent.asgi``), drive it
with ``bench.loadgen`` and stop it. Both servers use the same PostgreSQL and
the same Redis database, with distinct channel-layer prefixes. Results are
printed as a table and written as JSON (``bench/results/<UTC time>.json`` by
default). docs/benchmarks.md defines the scenarios and records the figures.

Scenarios:

* ``idle``: N authenticated sockets held open; server RSS before and after,
  and the server's CPU while they idle;
* ``big``: one room of M members, rising total send rates (50 senders at most);
* ``small``: R rooms of K members, every member sending at rising rates.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.loadgen import ClientSpec, LoadGenerator, StepResult
from spotify_agent.processes import free_port, wait_for_port

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"

DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/sa_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/13"
# The acceptance bar of a step: what "sustained" means in the summary.
P99_LIMIT_MS = 50.0
# At most this many members of the big room send: enough to spread the rate
# under the hub's per-socket frame limit, few enough that most sockets only read.
BIG_ROOM_SENDERS = 50
# After the joins, the server counts as quiet below this CPU share (idle
# sockets' timers keep it above zero), and is waited for at most this long.
SETTLE_CPU_PERCENT = 15.0
SETTLE_LIMIT = 90.0


@dataclass(frozen=True)
class Server:
    name: str
    application: str
    channel_prefix: str
    expect_hello: bool


REFERENCE = Server("reference", "bench.reference.asgi:application", "bench-ref", expect_hello=False)
HUB = Server("hub", "spotify_agent.asgi:application", "bench-hub", expect_hello=True)


# --- Environment, database, processes -----------------------------------------------


def configure_environment(*, database_url: str, redis_url: str) -> None:
    """Point this process (and the servers it starts) at the benchmark database and Redis.

    Production settings (DEBUG off: no query log growing with every frame)."""
    os.environ["DATABASE_URL"] = database_url
    os.environ["REDIS_URL"] = redis_url
    if not database_url:
        os.environ.pop("DATABASE_URL")
    if not redis_url:
        os.environ.pop("REDIS_URL")
    os.environ["DEBUG"] = "0"
    os.environ.setdefault("SECRET_KEY", "bench-only-secret-key-not-for-production-" + "0" * 40)
    os.environ.setdefault("ALLOWED_HOSTS", "127.0.0.1,localhost")
    os.environ.setdefault("SECURE_SSL_REDIRECT", "0")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    os.environ.setdefault("CACHE_KEY_PREFIX", "bench")
    # Pub/sub channels are global to a Redis server: keep clear of anyone else's.
    os.environ["FANOUT_CHANNEL_PREFIX"] = "bench-fanout"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "spotify_agent.settings")


def database_create(database_url: str) -> None:
    """Create the PostgreSQL database of ``database_url`` when it does not exist."""
    if not database_url.startswith(("postgres://", "postgresql://")):
        return
    import psycopg
    from psycopg import sql

    base, _, name = database_url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as connection:
        if connection.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name]).fetchone() is None:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def migrate() -> None:
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, check=True)


@dataclass
class RunningServer:
    server: Server
    process: subprocess.Popen
    url: str
    log: Path

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def server_running(server: Server, log_dir: Path, extra_env: dict[str, str] | None = None):
    port = free_port()
    log = log_dir / f"{server.name}-{port}.log"
    env = dict(os.environ, CHANNEL_LAYER_PREFIX=server.channel_prefix, PYTHONUNBUFFERED="1", **(extra_env or {}))
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), server.application],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        try:
            wait_for_port(port, process)
        except RuntimeError:
            raise RuntimeError(f"{server.name} did not start:\n{log.read_text()[-4000:]}") from None
        yield RunningServer(server=server, process=process, url=f"ws://127.0.0.1:{port}/ws/", log=log)
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


# --- Scenarios -----------------------------------------------------------------------------


def _step_row(result: StepResult, cpu_percent: float) -> dict[str, Any]:
    return dict(result.as_dict(), server_cpu_percent=round(cpu_percent, 1))


def scenario_idle(
    running: RunningServer, tokens: list[str], *, workers: int, hold: float, connect_within: float
) -> dict[str, Any]:
    time.sleep(1.0)
    rss_before = running.rss_mb()
    clients = [ClientSpec(token=token) for token in tokens]
    expect_hello = running.server.expect_hello
    with LoadGenerator(url=running.url, clients=clients, workers=workers, expect_hello=expect_hello) as gen:
        connected = gen.connect(within=connect_within)
        time.sleep(2.0)
        cpu_before, wall_before = running.cpu_seconds(), time.monotonic()
        still_open = gen.hold(hold)
        cpu = (running.cpu_seconds() - cpu_before) / (time.monotonic() - wall_before) * 100
        rss_after = running.rss_mb()
    per_connection_kb = (rss_after - rss_before) * 1024 / connected["connected"] if connected["connected"] else 0.0
    return {
        "target": len(tokens),
        "connected": connected["connected"],
        "failures": connected["failures"],
        "connect_seconds": connected["seconds"],
        "connect_retries": connected["retried"],
        "connects_per_s": round(connected["connected"] / connected["seconds"], 1) if connected["seconds"] else 0.0,
        "open_after_hold": still_open,
        "hold_seconds": hold,
        "rss_before_mb": round(rss_before, 1),
        "rss_after_mb": round(rss_after, 1),
        "rss_per_connection_kb": round(per_connection_kb, 1),
        "idle_cpu_percent": round(cpu, 1),
    }


def scenario_rooms(
    running: RunningServer,
    clients: list[ClientSpec],
    rates: list[float],
    *,
    workers: int,
    step_seconds: float,
    drain: float,
) -> dict[str, Any]:
    reference_style = running.server is REFERENCE
    with LoadGenerator(
        url=running.url,
        clients=clients,
        workers=workers,
        expect_hello=running.server.expect_hello,
        reference_style=reference_style,
    ) as gen:
        connected = gen.connect()
        joined = gen.join()
        settle = settle_seconds(running)
        steps = []
        for number, rate in enumerate(rates, start=1):
            cpu_before, wall_before = running.cpu_seconds(), time.monotonic()
            result = gen.step(number=number, target_rate=rate, duration=step_seconds, drain=drain)
            cpu = (running.cpu_seconds() - cpu_before) / (time.monotonic() - wall_before) * 100
            steps.append(_step_row(result, cpu))
            print(f"    {running.server.name}: {_format_step(steps[-1])}", flush=True)
    return {
        "connected": connected,
        "joined": joined,
        "settle_seconds": settle,
        "steps": steps,
        "sustained": sustained(steps),
    }


def settle_seconds(running: RunningServer) -> float:
    """Wait until the server is quiet (work triggered by the joins, such as
    presence broadcasts, is done) so a step measures its own traffic only.
    Returns the seconds waited; gives up after ``SETTLE_LIMIT``."""
    started = time.monotonic()
    while time.monotonic() - started < SETTLE_LIMIT:
        cpu_before = running.cpu_seconds()
        time.sleep(1.0)
        if (running.cpu_seconds() - cpu_before) * 100 < SETTLE_CPU_PERCENT:
            break
    return round(time.monotonic() - started, 1)


def sustained(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The step with the highest delivered rate that lost nothing at p99 under the limit."""
    good = [step for step in steps if step["lost"] == 0 and step["sent"] and step["p99_ms"] < P99_LIMIT_MS]
    return max(good, key=lambda step: step["delivered_per_s"], default=None)


def _format_step(step: dict[str, Any]) -> str:
    return (
        f"target {step['target_rate']:>7g} msg/s  sent {step['sent_per_s']:>8.1f}/s  "
        f"delivered {step['delivered_per_s']:>9.1f}/s  p50 {step['p50_ms']:>7.1f}  p99 {step['p99_ms']:>8.1f}  "
        f"max {step['max_ms']:>8.1f} ms  lost {step['lost']:>6}  cpu {step['server_cpu_percent']:>5.1f}%"
        + (f"  errors {step['errors']}" if step["errors"] else "")
    )


# --- Report ---------------------------------------------------------------------------------


def _ratio(hub: float | None, reference: float | None) -> str:
    if not hub or not reference:
        return "n/a"
    return f"{hub / reference:.1f}x"


def print_summary(results: dict[str, Any]) -> None:
    scenarios = results["scenarios"]
    print(f"\n== Summary (p99 limit {P99_LIMIT_MS:g} ms, nothing lost) ==")
    if "idle" in scenarios:
        print("idle sockets       connected/target   open after hold   RSS before→after MB   KB/conn   idle CPU")
        for name, row in scenarios["idle"].items():
            print(
                f"  {name:<16} {row['connected']:>7}/{row['target']:<7}   {row['open_after_hold']:>13}   "
                f"{row['rss_before_mb']:>8.1f}→{row['rss_after_mb']:<8.1f}   "
                f"{row['rss_per_connection_kb']:>7.1f}   {row['idle_cpu_percent']:>6.1f}%"
            )
    for key in ("big", "small"):
        if key not in scenarios:
            continue
        print(f"{key}: best sustained delivered/s (p99, CPU)")
        best = {}
        for name, row in scenarios[key].items():
            top = row.get("sustained")
            best[name] = top["delivered_per_s"] if top else None
            text = (
                f"{top['delivered_per_s']:.0f}/s at {top['target_rate']:g} msg/s (p99 {top['p99_ms']} ms, "
                f"cpu {top['server_cpu_percent']}%)"
                if top
                else row.get("skipped", "no step met the bar")
            )
            print(f"  {name:<16} {text}")
        print(f"  hub / reference  {_ratio(best.get('hub'), best.get('reference'))}")


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


# --- Entry point ------------------------------------------------------------------------------


def _rates(text: str) -> list[float]:
    return [float(item) for item in text.split(",") if item.strip()]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.split("\n\n")[0])
    parser.add_argument("--servers", default="reference,hub", help="comma-separated: reference, hub")
    parser.add_argument("--scenarios", default="idle,big,small", help="comma-separated: idle, big, small")
    parser.add_argument("--idle", type=int, default=10000, help="sockets of the idle scenario")
    parser.add_argument("--idle-hold", type=float, default=10.0, help="seconds the idle sockets are held")
    parser.add_argument(
        "--idle-connect-within",
        type=float,
        default=180.0,
        help="seconds allowed to open the idle sockets; those not attempted by then count as failed",
    )
    parser.add_argument("--big-members", type=int, default=1000, help="members of the big room")
    parser.add_argument("--big-rates", type=_rates, default=_rates("1,5,10,20,40"), help="total msg/s per step")
    parser.add_argument("--small-rooms", type=int, default=500)
    parser.add_argument("--small-members", type=int, default=4)
    parser.add_argument("--small-rates", type=_rates, default=_rates("0.25,0.5,1,2"), help="msg/s per member per step")
    parser.add_argument("--step-seconds", type=float, default=5.0)
    parser.add_argument("--drain", type=float, default=2.0, help="seconds waited for deliveries after a step")
    parser.add_argument("--workers", type=int, default=4, help="load generator processes")
    parser.add_argument("--database-url", default=os.environ.get("BENCH_DATABASE_URL", DEFAULT_DATABASE_URL))
    parser.add_argument("--redis-url", default=os.environ.get("BENCH_REDIS_URL", DEFAULT_REDIS_URL))
    parser.add_argument(
        "--server-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="an environment variable for both servers (repeatable), e.g. DATABASE_CONN_MAX_AGE=60",
    )
    parser.add_argument("--no-migrate", action="store_true", help="the database is already migrated")
    parser.add_argument("--output", type=Path, help="JSON results file (default bench/results/<UTC time>.json)")
    return parser.parse_args(argv)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # ``timeout`` and CI send SIGTERM: unwind, so every server and worker is stopped.
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    servers = [{"reference": REFERENCE, "hub": HUB}[name.strip()] for name in args.servers.split(",") if name.strip()]
    scenarios = [name.strip() for name in args.scenarios.split(",") if name.strip()]
    server_env = dict(item.split("=", 1) for item in args.server_env)

    configure_environment(database_url=args.database_url, redis_url=args.redis_url)
    if not args.no_migrate:
        database_create(args.database_url)
        migrate()
    import django

    django.setup()
    from bench.seed import bench_rooms_ensure, bench_users_ensure

    needed = max(
        args.idle if "idle" in scenarios else 0,
        args.big_members if "big" in scenarios else 0,
        args.small_rooms * args.small_members if "small" in scenarios else 0,
    )
    print(f"seeding {needed} users …", flush=True)
    users = bench_users_ensure(count=needed)
    tokens = [user.token for user in users]
    # The hub's chat family lives in chat/handlers.py; without it only the idle scenario applies.
    hub_chat = importlib.util.find_spec("chat.handlers") is not None

    started = datetime.now(tz=UTC)
    output = args.output or RESULTS_DIR / f"{started:%Y%m%dT%H%M%SZ}.json"
    output.parent.mkdir(parents=True, exist_ok=True)
    log_dir = output.parent
    results: dict[str, Any] = {
        "started_at": started.isoformat(),
        "machine": machine(),
        "arguments": {key: str(value) for key, value in vars(args).items()},
        "scenarios": {},
    }

    for scenario in scenarios:
        print(f"== {scenario}", flush=True)
        rows = results["scenarios"].setdefault(scenario, {})
        if scenario == "idle":
            for server in servers:
                with server_running(server, log_dir, server_env) as running:
                    rows[server.name] = scenario_idle(
                        running,
                        tokens[: args.idle],
                        workers=args.workers,
                        hold=args.idle_hold,
                        connect_within=args.idle_connect_within,
                    )
                print(f"    {server.name}: {rows[server.name]}", flush=True)
            continue
        if scenario == "big":
            (room,) = bench_rooms_ensure(prefix="bench-big", members=[[user.id for user in users[: args.big_members]]])
            clients = [
                ClientSpec(token=user.token, rooms=(str(room),), sends=index < BIG_ROOM_SENDERS)
                for index, user in enumerate(users[: args.big_members])
            ]
            rates = args.big_rates
        elif scenario == "small":
            size = args.small_members
            groups = [users[index * size : (index + 1) * size] for index in range(args.small_rooms)]
            rooms = bench_rooms_ensure(
                prefix=f"bench-small{size}", members=[[user.id for user in group] for group in groups]
            )
            clients = [
                ClientSpec(token=user.token, rooms=(str(room),), sends=True)
                for room, group in zip(rooms, groups, strict=True)
                for user in group
            ]
            rates = [rate * len(clients) for rate in args.small_rates]
        else:
            raise SystemExit(f"unknown scenario {scenario!r}")
        for server in servers:
            if server is HUB and not hub_chat:
                rows[server.name] = {"skipped": "the hub has no chat handlers (chat/handlers.py) yet"}
                continue
            with server_running(server, log_dir, server_env) as running:
                rows[server.name] = scenario_rooms(
                    running, clients, rates, workers=args.workers, step_seconds=args.step_seconds, drain=args.drain
                )

    results["finished_at"] = datetime.now(tz=UTC).isoformat()
    output.write_text(json.dumps(results, indent=2))
    print_summary(results)
    print(f"\nresults: {output}")
    return results


if __name__ == "__main__":
    main()
