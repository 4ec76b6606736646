"""Alternated p99 runs of appliance builds and settings against bare Litestar.

The driver behind the "fourth look" in docs/benchmarks.md ("Notes: serving").
It reuses the servers of `serving.py` (same model, same row, server on CPU 0,
wrk on CPU 1) and runs each variant for SECONDS at one concurrency, ROUNDS
times, in alternating order, after 3 s of untimed load at c=8. Each run also
reports the CPU that other processes used, so that runs on a busy machine
can be set apart. It prints its results; the only files it writes are the
variants' configs in a temporary folder and the servers' logs under
benchmarks/.work/.

    .venv/bin/python benchmarks/tail_ab.py CONCURRENCY SECONDS ROUNDS VARIANT...

A variant is ``bare`` (bare Litestar) or ``+``-joined parts:
``base`` (the installed appliance and the repository's config),
``src:PATH`` (the appliance of another checkout, such as a worktree) and
``set:SECTION.KEY=VALUE`` (set a key of the config, added when missing).
Run it from a folder outside the repository, so that ``src:`` checkouts are
imported rather than the repository's own package. Example:

    cd /tmp && /work/main/.venv/bin/python /work/main/benchmarks/tail_ab.py \\
        1 15 5 bare base src:/path/to/worktree+set:server.background_nice=0
"""

from __future__ import annotations

import re
import resource
import statistics
import sys
import tempfile
from pathlib import Path

import serving

QUIET_PERCENT = 5.0
"""CPU of other processes, in percent of one core, below which a run counts
as quiet."""


def main() -> int:
    if len(sys.argv) < 5:
        raise SystemExit(__doc__)
    connections, seconds, rounds = (int(a) for a in sys.argv[1:4])
    variants = sys.argv[4:]
    model = serving.prepare_model()
    servers = serving.servers(model, peers=False)
    appliance, bare = servers[0], servers[3]
    folder = Path(tempfile.mkdtemp(prefix="tail_ab_"))
    results: dict[str, list[tuple[float, float, float]]] = {v: [] for v in variants}
    for index in range(rounds):
        order = variants if index % 2 == 0 else variants[::-1]
        for variant in order:
            server = bare if variant == "bare" else _variant(appliance, variant, folder)
            result, others = _timed_run(server, connections, seconds)
            results[variant].append((result.p99_ms, result.rps, others))
            print(
                f"round {index} {variant}: p99 {result.p99_ms:.2f} ms "
                f"p50 {result.p50_ms:.2f} ms {result.rps:.0f} req/s "
                f"errors {result.errors} others {others:.0f}%",
                flush=True,
            )
    for variant, runs in results.items():
        quiet = [run for run in runs if run[2] < QUIET_PERCENT]
        counted = quiet or runs
        print(
            f"{variant}: p99 median {statistics.median(r[0] for r in counted):.2f} "
            f"ms over {len(counted)} runs ({len(quiet)} quiet), all "
            f"{[round(r[0], 2) for r in runs]}, "
            f"{statistics.median(r[1] for r in runs):.0f} req/s"
        )
    return 0


def _variant(appliance: serving.Server, variant: str, folder: Path) -> serving.Server:
    """Return the appliance server with the code and config `variant` names."""
    config = Path(appliance.command[4]).read_text()
    env = dict(appliance.env)
    for part in variant.split("+"):
        if part.startswith("set:"):
            key, value = part[4:].split("=", 1)
            section, name = key.split(".", 1)
            config = _set_key(config, section, name, value)
        elif part.startswith("src:"):
            env["PYTHONPATH"] = part[4:]
        elif part != "base":
            raise SystemExit(f"unknown variant part {part!r}")
    name = "appliance-" + re.sub(r"[^A-Za-z0-9=.]", "_", variant)
    path = folder / f"{name}.toml"
    path.write_text(config)
    command = [*appliance.command[:4], str(path), *appliance.command[5:]]
    return serving.Server(
        name, command, appliance.url, appliance.body, appliance.ready_url, env=env
    )


def _set_key(config: str, section: str, name: str, value: str) -> str:
    """Return TOML text `config` with `name` of table `section` set to `value`."""
    header = f"[{section}]\n"
    start = config.find(header)
    if start < 0:
        raise SystemExit(f"table [{section}] not found in the config")
    start += len(header)
    following = config.find("\n[", start)
    end = len(config) if following < 0 else following + 1
    body, count = re.subn(
        rf"(?m)^{re.escape(name)} = .*$", f"{name} = {value}", config[start:end]
    )
    if not count:
        body = f"{name} = {value}\n{body}"
    return config[:start] + body + config[end:]


def _timed_run(
    server: serving.Server, connections: int, seconds: int
) -> tuple[serving.LoadResult, float]:
    """Start `server`, warm it up, load it and stop it.

    Returns:
        The wrk result and the CPU that other processes used during the timed
        load, in percent of one core.
    """
    server.start()
    try:
        serving.run_wrk(server, 8, 3)
        busy_before, server_before = _busy_ticks(), _process_ticks(server)
        children = resource.getrusage(resource.RUSAGE_CHILDREN)
        result = serving.run_wrk(server, connections, seconds)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        busy = _busy_ticks() - busy_before
        own = _process_ticks(server) - server_before
    finally:
        server.stop()
    wrk = (
        after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
    ) * 100
    return result, (busy - own - wrk) / seconds


def _busy_ticks() -> int:
    """Return the clock ticks that every CPU spent outside idle and I/O wait."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    return sum(fields) - fields[3] - fields[4]


def _process_ticks(server: serving.Server) -> int:
    """Return the user and system clock ticks of the server process."""
    assert server.process is not None
    stat = Path(f"/proc/{server.process.pid}/stat").read_text()
    fields = stat.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


if __name__ == "__main__":
    sys.exit(main())
