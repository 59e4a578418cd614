"""The f2b-bgp command line: parse, call the daemon's API, render. No business logic here."""

from __future__ import annotations

import json
import os
import sys
import time
import tomllib
from pathlib import Path
from collections.abc import Iterator
from typing import Any, NoReturn

import click

from . import __version__, defaults
from .client import Client
from .http_client import HttpClient, client_context, read_token
from .errors import EXIT_CODE_HELP, ExitCode, F2bBgpError, PendingError, RequestError
EPILOG = "Exit codes:\n\n" + "\n\n".join(f"  {c.value}  {c.name.lower()}: {EXIT_CODE_HELP[c]}" for c in ExitCode)


class Context:
    def __init__(self, config: str | None, socket: str | None, debug: bool, url: str | None = None,
                 token_file: str | None = None, ca_file: str | None = None) -> None:
        self.config = config or os.environ.get("F2B_BGP_CONFIG") or defaults.CONFIG_PATH
        self.socket_override = socket or os.environ.get("F2B_BGP_SOCKET")
        self.debug = debug
        self.url, self.token_file, self.ca_file = url, token_file, ca_file

    @property
    def socket(self) -> str:
        """--socket, else the daemon.socket of the config file (read without validating it), else the default."""
        if self.socket_override:
            return self.socket_override
        try:
            with open(self.config, "rb") as fh:
                return str(tomllib.load(fh).get("daemon", {}).get("socket", defaults.API_SOCKET))
        except (OSError, tomllib.TOMLDecodeError, AttributeError):
            return defaults.API_SOCKET

    def client(self) -> Client | HttpClient:
        """The local socket's client, or with --url the central's HTTPS client (same calls, same errors)."""
        if not self.url:
            return Client(self.socket)
        if not self.token_file:
            raise RequestError("--url needs --token-file (env F2B_BGP_TOKEN_FILE)")
        return HttpClient(self.url, read_token(self.token_file), client_context(self.ca_file))

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        with self.client() as client:
            return client.call(op, **fields)


pass_ctx = click.make_pass_decorator(Context)


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="f2b-bgp")
@click.option("--config", "config", metavar="PATH", help="Config file [env F2B_BGP_CONFIG; default /etc/f2b-bgp/config.toml].")
@click.option("--socket", "socket", metavar="PATH", help="Daemon API socket [env F2B_BGP_SOCKET; default from the config].")
@click.option("--url", metavar="URL", envvar="F2B_BGP_URL",
              help="Talk to a central's HTTPS API (https://HOST:PORT) instead of the local socket [env F2B_BGP_URL].")
@click.option("--token-file", metavar="FILE", envvar="F2B_BGP_TOKEN_FILE",
              help="With --url: the file holding this client's token [env F2B_BGP_TOKEN_FILE].")
@click.option("--ca-file", metavar="FILE", envvar="F2B_BGP_CA_FILE",
              help="With --url: the CA of the central's certificate [default: the system's CAs].")
@click.option("--debug", is_flag=True, help="Show tracebacks of errors.")
@click.pass_context
def cli(ctx: click.Context, config: str | None, socket: str | None, url: str | None, token_file: str | None,
        ca_file: str | None, debug: bool) -> None:
    """Turn fail2ban bans into guarded BGP blackhole routes."""
    ctx.obj = Context(config, socket, debug, url, token_file, ca_file)


@cli.command()
@click.option("--adopt", "unaccounted", flag_value="adopt",
              help="A new or empty store: keep the routes of ours found in a backend as bans (default bantime).")
@click.option("--discard", "unaccounted", flag_value="discard",
              help="A new or empty store: withdraw the routes of ours found in a backend.")
@pass_ctx
def serve(ctx: Context, unaccounted: str | None) -> None:
    """Run the daemon in the foreground."""
    from .daemon import Unaccounted, run

    run(Path(ctx.config), debug=ctx.debug, unaccounted=Unaccounted(unaccounted or "refuse"))


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
    if result["state"] == "expired":
        click.echo(f"{result['prefix']}: not banned: this ban ended at {_when(result['expires'])} (already so)")
        return
    route, own = result["route_expires"], result["expires"]
    longer = f" (this claim by {jail} until {_when(own)})" if own != route else ""
    widened = f", widened from {result['address']}" if result["address"] else ""
    click.echo(f"{result['prefix']} {result['state']} until {_when(route)}{longer}{widened}")
    if result["escalated"]:
        click.echo(f"escalated: {result['escalated']} is blackholed (see 'f2b-bgp show {result['escalated']}')")
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
    if result["covered"]:
        click.echo(f"{result['prefix']}: still blackholed inside {', '.join(result['covered'])}; withdraw that prefix "
                   "to lift it")


@cli.command(name="list")
@click.option("--jail", help="Only bans owned by this jail.")
@click.option("--json", "as_json", is_flag=True, help="JSON for scripts.")
@pass_ctx
def list_(ctx: Context, jail: str | None, as_json: bool) -> None:
    """List blackholed prefixes (page by page: a million rows stream without holding up the daemon)."""
    first = True
    if not as_json:
        click.echo(_row(LIST_HEADER))
    for bans in _pages(ctx, jail):
        for b in bans:
            if as_json:
                click.echo(("[" if first else ",") + json.dumps(b, separators=(",", ":")))
                first = False
                continue
            backends = " ".join(f"{n}:{s['state']}" for n, s in b["backends"].items())
            for owner in b["owners"]:  # with --jail, the daemon sends only that jail's claims
                click.echo(_row((b["prefix"], owner["jail"], owner["address"] or owner["origin"] or "-",
                                 _when(owner["created"]), _when(owner["expires"]), b["state"], backends)))
    if as_json:
        click.echo("[]" if first else "]")


LIST_HEADER = ("PREFIX", "JAIL", "FROM", "SINCE", "EXPIRES", "STATE", "BACKEND")
# an IPv6 /128 is 43 characters at most, a widened ban's address 39; a jail may be wider
LIST_WIDTHS = (43, 16, 39, 20, 20, 7)


EVENTS_HEADER = ("TIME", "EVENT", "PREFIX", "JAIL", "DETAIL")
EVENTS_WIDTHS = (20, 13, 43, 16)


def _row(cells: tuple[str, ...], widths: tuple[int, ...] = LIST_WIDTHS) -> str:
    """Fixed widths, so rows print as they come (a wider cell only shifts its own row)."""
    return "  ".join(c.ljust(w) for c, w in zip(cells, (*widths, 0))).rstrip()


def _pages(ctx: Context, jail: str | None) -> Iterator[list[dict[str, Any]]]:
    with ctx.client() as client:
        after = ""
        while True:
            page = client.call("list", jail=jail, after=after)
            yield page["bans"]
            if page["next"] is None:
                return
            after = page["next"]


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
    click.echo(f"{result['prefix']}: {_blackholed(result)}")
    for b in result["bans"]:
        click.echo(f"  {b['prefix']} state {b['state']}; " + "; ".join(
            f"{n} {s['state']}{' (' + s['error'] + ')' if s['error'] else ''}" for n, s in b["backends"].items()))
        for owner in b["owners"]:
            widened = f" for {owner['address']}" if owner["address"] else ""
            click.echo(f"  banned by {owner['jail']}{widened} since {_when(owner['created'])} until "
                       f"{_when(owner['expires'])}" + (f": {owner['reason']}" if owner["reason"] else ""))
    if verdict["accepted"]:
        click.echo("  guards: a ban would be accepted")
    else:
        click.echo(f"  guards: a ban would be refused by {verdict['guard']}: {verdict['reason']}")


def _blackholed(result: dict[str, Any]) -> str:
    """'blackholed', or which wider ban holds it: 'blackholed by 2001:db8:7::/64, widened from 2001:db8:7::5 (sshd)'."""
    active = [b for b in result["bans"] if b["state"] == "active"]
    if not result["blackholed"] or not active:
        return "not blackholed"
    if active[0]["prefix"] == result["prefix"]:
        return "blackholed"
    owner = active[0]["owners"][0]
    if owner["origin"] == "widened":
        why = f"widened from {owner['address']} ({owner['jail']})"
    elif owner["origin"] == "escalated":
        why = owner["reason"].split(":", 1)[0]
    else:
        why = f"banned by {owner['jail']}"
    return f"blackholed by {active[0]['prefix']}, {why}"


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
    for name, drift in report["backends"].items():
        click.echo(f"{name}: {_drift(drift)}")
    if report["guard_withdrawn"]:
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
    routes, limits, store = result["routes"], result["limits"], result["store"]
    click.echo(f"f2b-bgp {result['version']}, up {result['uptime']:.0f} s")
    click.echo(f"routes: {routes['active']} active, {routes['pending']} pending (max {limits['max_routes']})")
    click.echo(f"new bans in the last minute: {limits['bans_last_minute']} (max {limits['max_rate']})")
    click.echo("store: writable" if store["writable"] else
               f"store: NOT WRITABLE since {_when(store['since'])}: {store['error']} (reads work, writes are refused)")
    for name, state in result["backends"].items():
        _backend_status(name, state)
    last = result["last_reconcile"]
    if last:
        drift = "; ".join(f"{n}: {_drift(d)}" for n, d in last["backends"].items())
        click.echo(f"last check ({last['why']}) {_when(last['at'])}: {drift}")
    if result["queue"]:
        click.echo(_queue_line(result["queue"]))


def _backend_status(name: str, state: dict[str, Any]) -> None:
    words = [("ready" if state["ready"] else "NOT READY"), f"{state['pending']} pending"]
    if state["unaccounted"]:
        words.append(f"{state['unaccounted']} unaccounted routes kept (see 'serve --adopt/--discard')")
    words += [f"{k}={v}" for k, v in {**state["settings"], **state["counters"]}.items()]
    click.echo(f"backend {name}: " + ", ".join(words))
    if state["last_error"]:
        click.echo(f"  last error: {state['last_error']}")
    bridge = state["bridge"]
    if bridge:
        click.echo(f"  bridge pid {bridge['pid']} (ExaBGP pid {bridge['exabgp_pid']}) connected {_when(bridge['connected'])}")
    for address, peer in state["peers"].items():
        reason = f" ({peer['reason']})" if peer["reason"] else ""
        click.echo(f"  peer {address}: {peer['state']} since {_when(peer['since'])}{reason}")


def _drift(drift: dict[str, Any]) -> str:
    if not drift["checked"]:
        return "not checked (the backend cannot tell what it holds now)"
    if not drift["missing"] and not drift["stale"]:
        return "in sync"
    done = "repaired" if drift["repaired"] else "repair pending, the daemon retries"
    return f"missing {drift['missing']}, stale {drift['stale']} ({done})"


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
    click.echo(_row(EVENTS_HEADER, EVENTS_WIDTHS))
    for r in rows:
        click.echo(_row((_when(r["ts"]), r["event"], r["prefix"], r["jail"], r["detail"]), EVENTS_WIDTHS))


@cli.command(name="check-config")
@pass_ctx
def check_config(ctx: Context) -> None:
    """Validate the config file: every error once (exit 3), then warnings, which keep exit 0."""
    from .config import config_warnings, load_config
    from .errors import ConfigError

    try:
        config = load_config(Path(ctx.config))
    except ConfigError as err:
        for problem in err.problems:
            click.echo(f"{ctx.config}: {problem}", err=True)
        sys.exit(ExitCode.CONFIG)  # every problem is printed: no summary line repeating the first
    for warning in config_warnings(config):
        click.echo(f"warning: {ctx.config}: {warning}", err=True)
    click.echo(f"{ctx.config}: ok")


@cli.command()
@click.argument("target")
@click.option("--peer", metavar="NAME", help="Which bgp.peers entry (firewall targets; needed when there are several).")
@click.option("--output-dir", type=click.Path(file_okay=False, path_type=Path), help="Write the files here instead of printing them.")
@click.option("--routeros-version", metavar="V", help="routeros: the firewall's RouterOS version, e.g. 7.18 "
              "(7.1-7.18, 7.19 and 7.20+ differ). [default: 7.20 and later]")
@pass_ctx
def peering(ctx: Context, target: str, peer: str | None, output_dir: Path | None, routeros_version: str | None) -> None:
    """Render the firewall (or injector) config for TARGET from this config.

    TARGET: frr, bird, openbgpd, routeros (firewalls); exabgp, frr-injector (this host)."""
    from .config import load_config
    from .peering import TARGETS, render, routeros

    if target not in TARGETS:
        raise click.BadParameter(f"unknown target {target!r}; choose from {', '.join(TARGETS)}", param_hint="TARGET")
    syntax = routeros.NEWEST
    if routeros_version is not None:
        if target != "routeros":
            raise click.BadParameter("only for the routeros target", param_hint="--routeros-version")
        try:
            syntax = routeros.syntax_for(routeros_version)
        except ValueError as err:
            raise click.BadParameter(str(err), param_hint="--routeros-version") from None
    files = render(target, load_config(Path(ctx.config)), peer, syntax)
    for name, text in files.items():
        if output_dir is not None:
            output_dir.mkdir(parents=True, exist_ok=True)
            (output_dir / name).write_text(text)
            click.echo(f"wrote {output_dir / name}")
        else:
            click.echo(f"### {name}\n{text}" if len(files) > 1 else text, nl=False)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="JSON for monitoring.")
@click.option("--vtysh-dir", metavar="DIR", help="FRR's vty socket dir (vtysh --vty_socket) [default: FRR's own].")
@click.option("--fail2ban-socket", metavar="PATH", help="fail2ban-server's socket [default: fail2ban's own].")
@pass_ctx
def doctor(ctx: Context, as_json: bool, vtysh_dir: str | None, fail2ban_socket: str | None) -> None:
    """Check the chain on this host, one line per check: ok, warn or fail, and what to do.

    Exit code: 0 all ok, 9 the worst check warns, 10 a check failed."""
    from .doctor import Options, run as run_doctor

    report = run_doctor(Options(Path(ctx.config), ctx.socket, vtysh_dir, fail2ban_socket))
    click.echo(report.as_json() if as_json else "\n".join(c.line() for c in report.checks))
    sys.exit(report.exit_code)


@cli.group()
def token() -> None:
    """Tokens of the HTTPS API's clients (docs/central.md)."""


@token.command(name="new")
@click.argument("name")
def token_new(name: str) -> None:
    """Make a token for client NAME: the secret once, and the lines for the central's config."""
    from .config import token_name
    from .tokens import config_lines, digest, new_secret

    try:
        token_name(name)
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="NAME") from None
    secret = new_secret()
    click.echo(f"# the token of {name}, shown once: put it alone in the client's token file (mode 0600)")
    click.echo(secret)
    click.echo("# on the central: add to its config.toml, then reload (systemctl reload f2b-bgp, or SIGHUP)")
    click.echo(config_lines(name, digest(secret)), nl=False)


@cli.command(name="exabgp-bridge")
@click.option("--socket", "bridge_socket", metavar="PATH", default=defaults.BRIDGE_SOCKET, show_default=True,
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
    except (click.Abort, KeyboardInterrupt):
        click.echo("f2b-bgp: interrupted", err=True)
        sys.exit(ExitCode.INTERRUPTED)
    except Exception as err:  # noqa: BLE001 - the last resort: one line, not a traceback
        if debug:
            raise
        click.echo(f"f2b-bgp: error: internal error: {type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
                   " (run with --debug for the traceback)", err=True)
        sys.exit(ExitCode.ERROR)
