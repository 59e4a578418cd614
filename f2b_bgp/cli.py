"""The f2b-bgp command line: parse, call the daemon's API, render. No business logic here."""

from __future__ import annotations

import json
import os
import sys
import time
import tomllib
from pathlib import Path
from typing import Any, NoReturn

import click

from . import __version__
from .client import Client
from .errors import EXIT_CODE_HELP, ExitCode, F2bBgpError, PendingError

DEFAULT_SOCKET = "/run/f2b-bgp/f2b-bgp.sock"
EPILOG = "Exit codes:\n\n" + "\n\n".join(f"  {c.value}  {c.name.lower()}: {EXIT_CODE_HELP[c]}" for c in ExitCode)


class Context:
    def __init__(self, config: str | None, socket: str | None, debug: bool) -> None:
        self.config = config or os.environ.get("F2B_BGP_CONFIG") or "/etc/f2b-bgp/config.toml"
        self.socket_override = socket or os.environ.get("F2B_BGP_SOCKET")
        self.debug = debug

    @property
    def socket(self) -> str:
        """--socket, else the daemon.socket of the config file (read without validating it), else the default."""
        if self.socket_override:
            return self.socket_override
        try:
            with open(self.config, "rb") as fh:
                return str(tomllib.load(fh).get("daemon", {}).get("socket", DEFAULT_SOCKET))
        except (OSError, tomllib.TOMLDecodeError, AttributeError):
            return DEFAULT_SOCKET

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        with Client(self.socket) as client:
            return client.call(op, **fields)


pass_ctx = click.make_pass_decorator(Context)


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="f2b-bgp")
@click.option("--config", "config", metavar="PATH", help="Config file [env F2B_BGP_CONFIG; default /etc/f2b-bgp/config.toml].")
@click.option("--socket", "socket", metavar="PATH", help="Daemon API socket [env F2B_BGP_SOCKET; default from the config].")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.pass_context
def cli(ctx: click.Context, config: str | None, socket: str | None, debug: bool) -> None:
    """Turn fail2ban bans into guarded BGP blackhole routes."""
    ctx.obj = Context(config, socket, debug)


@cli.command()
@pass_ctx
def serve(ctx: Context) -> None:
    """Run the daemon in the foreground."""
    from .daemon import run

    run(Path(ctx.config), debug=ctx.debug)


@cli.command()
@click.argument("address")
@click.option("--jail", default="cli", show_default=True, help="Owner of this ban (fail2ban jail, host or operator).")
@click.option("--bantime", type=int, help="Seconds; -1 permanent (capped by daemon.max_bantime). [default: daemon.default_bantime]")
@click.option("--started", type=float, metavar="EPOCH", help="When the ban began (restored bans keep their expiry).")
@click.option("--reason", default="", help="Free text kept with the ban.")
@pass_ctx
def ban(ctx: Context, address: str, jail: str, bantime: int | None, started: float | None, reason: str) -> None:
    """Blackhole ADDRESS (idempotent: a repeat ban extends the expiry)."""
    result = ctx.call("ban", prefix=address, jail=jail, bantime=bantime, started=started, reason=reason)
    click.echo(f"{result['prefix']} {result['state']} until {_when(result['expires'])}")
    if result["state"] == "pending":
        raise PendingError(f"{result['prefix']} is stored but not yet acknowledged by every backend",
                           hint="the daemon retries; see 'f2b-bgp status'")


@cli.command()
@click.argument("address")
@click.option("--jail", default="cli", show_default=True, help="Whose claim to remove.")
@pass_ctx
def unban(ctx: Context, address: str, jail: str) -> None:
    """Remove one owner's claim on ADDRESS; the route goes when no claim is left."""
    result = ctx.call("unban", prefix=address, jail=jail)
    if not result["removed"]:
        click.echo(f"{result['prefix']}: no ban by {jail} (already so)")
    elif result["remaining"]:
        click.echo(f"{result['prefix']}: removed {jail}; still banned by {', '.join(result['remaining'])}")
    else:
        click.echo(f"{result['prefix']}: removed {jail}; withdrawn")


@cli.command()
@click.argument("address")
@pass_ctx
def withdraw(ctx: Context, address: str) -> None:
    """Withdraw ADDRESS now, whoever banned it."""
    result = ctx.call("withdraw", prefix=address)
    removed = ", ".join(result["removed"])
    click.echo(f"{result['prefix']}: withdrawn (removed {removed})" if removed else f"{result['prefix']}: not banned (already so)")


@cli.command(name="list")
@click.option("--jail", help="Only bans owned by this jail.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@pass_ctx
def list_(ctx: Context, jail: str | None, as_json: bool) -> None:
    """List blackholed prefixes."""
    bans = ctx.call("list", jail=jail)["bans"]
    if as_json:
        click.echo(json.dumps(bans, indent=2))
        return
    rows = [("PREFIX", "JAIL", "SINCE", "EXPIRES", "STATE", "BACKEND")]
    for b in bans:
        backends = " ".join(f"{n}:{s['state']}" for n, s in b["backends"].items())
        for owner in b["owners"]:
            rows.append((b["prefix"], owner["jail"], _when(owner["created"]), _when(owner["expires"]), b["state"], backends))
    _table(rows)


@cli.command()
@click.argument("address")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@pass_ctx
def show(ctx: Context, address: str, as_json: bool) -> None:
    """Tell whether ADDRESS is blackholed and by which ban, or which guard would refuse it."""
    result = ctx.call("show", prefix=address)
    if as_json:
        click.echo(json.dumps({k: v for k, v in result.items() if k != "ok"}, indent=2))
        return
    verdict = result["verdict"]
    click.echo(f"{result['prefix']}: {'blackholed' if result['blackholed'] else 'not blackholed'}")
    for b in result["bans"]:
        click.echo(f"  state {b['state']}; " + "; ".join(f"{n} {s['state']}{' (' + s['error'] + ')' if s['error'] else ''}"
                                                          for n, s in b["backends"].items()))
        for owner in b["owners"]:
            click.echo(f"  banned by {owner['jail']} since {_when(owner['created'])} until {_when(owner['expires'])}"
                       + (f": {owner['reason']}" if owner["reason"] else ""))
    if verdict["accepted"]:
        click.echo("  guards: a ban would be accepted")
    else:
        click.echo(f"  guards: a ban would be refused by {verdict['guard']}: {verdict['reason']}")


@cli.command()
@click.option("--jail", help="Only this jail's bans (default: every ban).")
@pass_ctx
def flush(ctx: Context, jail: str | None) -> None:
    """Withdraw every ban of one jail, or every ban."""
    result = ctx.call("flush", jail=jail)
    click.echo(f"removed {result['removed']} ban(s){' of ' + jail if jail else ''}")


@cli.command()
@pass_ctx
def sync(ctx: Context) -> None:
    """Compare every backend with the store now and repair drift."""
    report = ctx.call("sync")["report"]
    for name, found in report.items():
        if isinstance(found, dict) and "checked" in found:
            detail = f"missing {found['missing']}, stale {found['stale']} (repaired)" if found["checked"] else "unreachable"
            click.echo(f"{name}: {detail}")
    if report.get("guard_withdrawn"):
        click.echo(f"withdrawn by guards: {', '.join(report['guard_withdrawn'])}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@pass_ctx
def status(ctx: Context, as_json: bool) -> None:
    """Daemon, backends and limits."""
    result = ctx.call("status")
    if as_json:
        click.echo(json.dumps({k: v for k, v in result.items() if k != "ok"}, indent=2))
        return
    routes, limits = result["routes"], result["limits"]
    click.echo(f"f2b-bgp {result['version']}, up {result['uptime']:.0f} s")
    click.echo(f"routes: {routes['active']} active, {routes['pending']} pending (max {limits['max_routes']})")
    click.echo(f"new bans in the last minute: {limits['bans_last_minute']} (max {limits['max_rate']})")
    for name, state in result["backends"].items():
        peers, bridge = state.pop("peers", {}), state.pop("bridge", None)
        click.echo(f"backend {name}: " + ", ".join(f"{k}={_flat(v)}" for k, v in state.items()))
        if bridge:
            click.echo(f"  bridge pid {bridge['pid']} (ExaBGP pid {bridge['exabgp_pid']}) "
                       f"connected {_when(bridge['connected'])}")
        for address, peer in peers.items():
            reason = f" ({peer['reason']})" if peer["reason"] else ""
            click.echo(f"  peer {address}: {peer['state']} since {_when(peer['since'])}{reason}")
    if result.get("queue"):
        click.echo(_queue_line(result["queue"]))


@cli.command()
@click.option("--since", metavar="DURATION", help="Only the last DURATION: 90s, 15m, 2h, 7d (a number alone: seconds).")
@click.option("--prefix", metavar="P", help="Only events of this address or prefix.")
@click.option("--jail", metavar="J", help="Only events of this jail (owner).")
@click.option("--limit", type=click.IntRange(1, 1000), default=100, show_default=True, help="At most this many, the newest.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@pass_ctx
def events(ctx: Context, since: str | None, prefix: str | None, jail: str | None, limit: int, as_json: bool) -> None:
    """The daemon's event log: bans, unbans, expiries, refusals, queue entries applied."""
    start = None if since is None else time.time() - _duration(since)
    rows = ctx.call("events", since=start, prefix=prefix, jail=jail, limit=limit)["events"]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    table = [("TIME", "EVENT", "PREFIX", "JAIL", "DETAIL")]
    table += [(_when(r["ts"]), r["event"], r["prefix"], r["jail"], r["detail"]) for r in rows]
    _table(table)


@cli.command(name="check-config")
@pass_ctx
def check_config(ctx: Context) -> None:
    """Validate the config file and list every problem."""
    from .config import load_config
    from .errors import ConfigError

    try:
        load_config(Path(ctx.config))
    except ConfigError as err:
        for problem in err.problems:
            click.echo(f"{ctx.config}: {problem}", err=True)
        raise
    click.echo(f"{ctx.config}: ok")


@cli.command()
@click.argument("target")
@click.option("--peer", metavar="NAME", help="Which bgp.peers entry (firewall targets; needed when there are several).")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), help="Write the files here instead of printing them.")
@pass_ctx
def peering(ctx: Context, target: str, peer: str | None, output_dir: Path | None) -> None:
    """Render the firewall (or injector) config for TARGET from this config.

    TARGET: frr, bird, openbgpd, routeros (firewalls); exabgp, frr-injector (this host)."""
    from .config import load_config
    from .peering import TARGETS, render

    if target not in TARGETS:
        raise click.BadParameter(f"unknown target {target!r}; choose from {', '.join(TARGETS)}", param_hint="TARGET")
    files = render(target, load_config(Path(ctx.config)), peer)
    for name, text in files.items():
        if output_dir is not None:
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / name).write_text(text)
            click.echo(f"wrote {output_dir / name}")
        else:
            click.echo(f"### {name}\n{text}" if len(files) > 1 else text, nl=False)


@cli.command(name="exabgp-bridge")
@click.option("--socket", "bridge_socket", metavar="PATH", default="/run/f2b-bgp/exabgp.sock", show_default=True,
              envvar="F2B_BGP_BRIDGE_SOCKET", show_envvar=True,
              help="The daemon's bridge socket (backends.exabgp.bridge_socket).")
def exabgp_bridge(bridge_socket: str) -> None:
    """Relay between ExaBGP (stdin/stdout) and the daemon; run from ExaBGP's process block."""
    from .exabgp_bridge import main as bridge_main

    sys.exit(bridge_main(bridge_socket))


def _when(ts: float | None) -> str:
    return "never" if ts is None else time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(ts))


def _queue_line(queue: dict[str, Any]) -> str:
    oldest = f", oldest {queue['oldest_age']:.1f} s" if queue["oldest_age"] is not None else ""
    line = (f"fail2ban queue {queue['path']}: {queue['depth']} waiting{oldest}; since start "
            f"{queue['applied']} applied, {queue['refused']} refused, {queue['malformed']} malformed")
    return line + (f"\n  error: {queue['error']}" if queue["error"] else "")


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    unit = DURATION_UNITS.get(text[-1:], 0)
    number = text[:-1] if unit else text
    unit = unit or 1
    try:
        value = float(number)
    except ValueError:
        value = -1.0
    if not 0 <= value < 10**9 or number.strip() != number:
        raise click.BadParameter(f"{text!r} is not a duration such as 90s, 15m, 2h or 7d", param_hint="--since")
    return value * unit


def _flat(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, (dict, list)) else str(value)


def _table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def _fail(err: F2bBgpError, debug: bool) -> NoReturn:
    if debug:
        import traceback

        traceback.print_exc()
    click.echo(f"f2b-bgp: {err.code}: {err.message}", err=True)
    if err.hint:
        click.echo(f"hint: {err.hint}", err=True)
    sys.exit(err.exit_code)


def main() -> None:
    debug = "--debug" in sys.argv[1:]
    try:
        cli.main(standalone_mode=False)
    except F2bBgpError as err:
        _fail(err, debug)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(ExitCode.USAGE if isinstance(exc, click.UsageError) else ExitCode.ERROR)
    except click.Abort:
        click.echo("aborted", err=True)
        sys.exit(ExitCode.ERROR)
    except KeyboardInterrupt:
        sys.exit(130)
