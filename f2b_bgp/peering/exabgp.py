"""ExaBGP 5 as the injector (ExaBGP backend): exabgp.conf with the bridge process and one
neighbor per firewall, and exabgp.env with the settings the bridge relies on."""

from __future__ import annotations

from pathlib import Path

from f2b_bgp.config import DEFAULT_BRIDGE_SOCKET, Config
from f2b_bgp.errors import ConfigError

from .model import Peering, Placeholder, Session, injector_sessions, peering
from .text import header, template

# The run line names the bridge socket only when the config moves it from DEFAULT_BRIDGE_SOCKET (the
# bridge's own default), so F2B_BGP_BRIDGE_SOCKET can still move it for the default.


def render(config: Config) -> dict[str, str]:
    p = peering(config)
    socket = config.exabgp.bridge_socket

    def head(name: str, values: list[Placeholder]) -> str:
        return header("#", f"ExaBGP 5 injector (ExaBGP backend), {name}", "exabgp", values)

    return {
        "exabgp.conf": template(
            "exabgp.conf",
            header=head("exabgp.conf", _conf_placeholders(p, socket, config.exabgp.bridge_program)),
            program=config.exabgp.bridge_program,
            socket_option=_socket_option(socket),
            router_id=p.injector_id("ExaBGP"),
            local_as=p.injector_as,
            neighbors="\n".join(_neighbor(s) for s in p.sessions),
        ),
        "exabgp.env": template(
            "exabgp.env",
            header=head("exabgp.env", [_bind_placeholder(p)]),
            bind=" ".join(_bind(p)),
        ),
    }


def _socket_option(socket: Path) -> str:
    if socket == DEFAULT_BRIDGE_SOCKET:
        return ""
    if any(c.isspace() or c in ';{}[]"\'' for c in str(socket)):
        raise ConfigError(["backends.exabgp.bridge_socket: no spaces, quotes, ';', braces or brackets, "
                           "it goes on ExaBGP's run line"])
    return f" --socket {socket}"


def _neighbor(s: Session) -> str:
    lines = [
        "inherit f2b-firewall;",
        f'description "{s.name or "f2b-bgp firewall"}";',
        f"local-address {s.injector};",
        f"peer-as {s.firewall_as};",
    ]
    return f"neighbor {s.firewall} {{\n" + "".join(f"    {line}\n" for line in lines) + "}\n"


def _bind(p: Peering) -> list[str]:
    """The injector's session addresses, each once, in the order of bgp.peers."""
    return list(dict.fromkeys(str(s.injector) for s in p.sessions))


def _conf_placeholders(p: Peering, socket: Path, program: Path) -> list[Placeholder]:
    where = "the bridge's default, so not on the run line" if socket == DEFAULT_BRIDGE_SOCKET else "on the run line"
    return injector_sessions(p, names=True) + [
        Placeholder(str(socket), "backends.exabgp.bridge_socket", f"the daemon's bridge socket ({where})"),
        Placeholder(str(program), "backends.exabgp.bridge_program", "the f2b-bgp that runs the bridge"),
    ]


def _bind_placeholder(p: Peering) -> Placeholder:
    return Placeholder(" ".join(_bind(p)), "bgp.peers[].local_address", "addresses ExaBGP listens on (each once)")
