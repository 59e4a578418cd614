"""Defaults shared by the daemon, the CLI, the bridge and the renderers (stdlib only: the thin clients import it)."""

CONFIG_PATH = "/etc/f2b-bgp/config.toml"
API_SOCKET = "/run/f2b-bgp/f2b-bgp.sock"
BRIDGE_SOCKET = "/run/f2b-bgp/exabgp.sock"
DATABASE = "/var/lib/f2b-bgp/state.db"
BLACKHOLE = "65535:666"  # RFC 7999 BLACKHOLE community
