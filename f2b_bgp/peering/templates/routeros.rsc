$header
# RouterOS v7 script for $versions (`f2b-bgp peering routeros
# --routeros-version`): import with `/import f2b-bgp.rsc`, or paste it.
# NOT TESTED ON ANY DEVICE: written from MikroTik's documentation and checked
# only against a golden file. Confirm on a lab router before production:
# `/routing filter rule print`, then `/routing bgp session print` and
# `/routing route print where bgp && blackhole` after the first ban.
#
# Safe to import again: it first removes everything an earlier import added
# (comment=$mark). Re-importing resets the session; the injector sends every
# route again.
#
# More than $limit routes of a family from the injector: RouterOS closes the
# session and flags it limit-exceeded, and it stays down (every ban lifted)
# until the flag is cleared by hand, after the injector has withdrawn enough:
#   /routing bgp session clear [find where remote.address=$injector]

/routing bgp connection remove [find where comment="$mark"]
${remove_instance}/routing filter rule remove [find where comment="$mark"]

# (1) never accept anything inside our own networks, peers and next-hops
/routing filter rule
$protected
# (2) nothing shorter than the guards allow (host routes by default),
# (3) RFC 7999 BLACKHOLE required, (5) installed as a blackhole
$host4
$host6
$reject_in
# the firewall announces nothing to the injector
$reject_out

# (4) at most $limit routes per family from the injector (see limit-exceeded above)
$connection

# A blackhole drops by destination; strict uRPF also drops the attacker's own
# IPv4 packets (use loose where routing is asymmetric).
/ip settings set rp-filter=strict
# RouterOS has no IPv6 rp-filter. UNTESTED, so left commented out: drop IPv6
# packets whose source has no usable route, blackholed attackers among them
# (like loose uRPF, it needs a default route that does not depend on this
# session). Uncomment both lines together, so a second import removes it.
# /ipv6 firewall raw remove [find where comment="$mark"]
# /ipv6 firewall raw add chain=prerouting src-address-type=unreachable action=drop comment="$mark"
