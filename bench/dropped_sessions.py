"""Reliability run: PostgreSQL ends every session of flowgate, again and again, under load.

A quick restart, ``idle_session_timeout`` or a proxy ends the sessions of a running
server. Here ``pg_terminate_backend`` ends every session on flowgate's database every
``--every`` seconds while ``--clients`` clients each keep one ``POST
/v1/google-flow/images`` in flight for ``--seconds`` (sandbox upstream, no delay).

    .venv/bin/python -m bench.dropped_sessions [--clients 32] [--seconds 10] [--every 0.5]

Reports every answer's status (warm-up included), the jobs left ``failed`` (an image
the upstream made that flowgate lost), and how often flowgate recovered (its log's
warnings). Target: no failed request and no failed job.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections import Counter

from bench.goodput import failure_reasons
from bench.loadgen import LoadSpec, run_in_process
from bench.overhead import API_KEY, flowgate_request
from bench.servers import Flowgate, Sandbox, Scratch, machine_line, psql

RECOVERIES = (
    "database connection broke before a commit; batch sent again",
    "job ending lost with its connection; sent again",
    "new job lost with its connection; sent again",
    "database connection broke during a read; read again",
    "the database connection broke while in use; answered 503",
)


def end_sessions_until(
    stop: threading.Event, database: str, every: float, ended: list[int]
) -> None:
    """End every session on ``database`` each ``every`` seconds until ``stop``."""
    while not stop.wait(every):
        count = psql(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            f"WHERE datname = '{database}'"
        )
        ended.append(int(count.strip() or 0))


def main() -> None:
    """Run it and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--every", type=float, default=0.5, help="seconds between endings")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    with Scratch() as work, Sandbox(work).start() as sandbox:
        with Flowgate(work, backend="postgres").start() as gateway:
            gateway.add_sandbox_account(
                gateway.token, "bench@example.com", sandbox, api_key=API_KEY, max_concurrency=1000
            )
            database = gateway.full_env["FLOWGATE_DATABASE_URL"].rsplit("/", 1)[1]
            stop, ended = threading.Event(), list[int]()
            killer = threading.Thread(
                target=end_sessions_until, args=(stop, database, args.every, ended)
            )
            killer.start()
            try:
                spec = LoadSpec(
                    "127.0.0.1",
                    gateway.port,
                    [flowgate_request(gateway.token)],
                    concurrency=args.clients,
                    duration=args.seconds,
                    warmup=0.5,
                    keep_bodies=True,
                )
                result = run_in_process(spec)
            finally:
                stop.set()
                killer.join()
            time.sleep(1)  # answers already sent; let the last job endings land
            jobs = psql("SELECT status, count(*) FROM jobs GROUP BY status", database=database)
            log = gateway.log.read_text()
    messages: Counter[str] = Counter()
    for line in log.splitlines():
        if line.startswith("{"):
            message = json.loads(line).get("message", "")
            for recovery in RECOVERIES:
                if message.startswith(recovery):
                    messages[recovery] += 1
    statuses = dict(line.split("|") for line in jobs.split())
    print(
        f"{len(ended)} rounds ended {sum(ended)} sessions (every {args.every:g} s, "
        f"{args.clients} clients, {args.seconds:g} s)"
    )
    # Every answer counts here, the warm-up's and the last ones' too.
    answers = Counter(str(sample["status"]) for sample in result["samples"])
    print(f"requests: {len(result['samples'])}, answers {dict(answers)}")
    for reason, count in failure_reasons(result["samples"]).most_common(5):
        print(f"  {count} × {reason}")
    print(f"jobs: {statuses}")
    for recovery in RECOVERIES:
        print(f"  {messages[recovery]} × {recovery}")
    failed = len(result["samples"]) - answers["200"] + int(statuses.get("failed", 0))
    print(f"target: no failed request and no failed job: {'met' if failed == 0 else 'NOT met'}")


if __name__ == "__main__":
    main()
