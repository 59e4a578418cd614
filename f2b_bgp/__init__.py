"""f2b-bgp: fail2ban bans as guarded BGP blackhole routes."""

__version__ = "0.1.0"
