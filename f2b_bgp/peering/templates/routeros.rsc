$header
# RouterOS v7 script: import with `/import f2b-bgp.rsc`, or paste it.
# NOT TESTED ON ANY DEVICE: written from MikroTik's documentation and checked
# only against a golden file. Confirm on a lab router before production:
# `/routing filter rule print`, then `/routing bgp session print` and
# `/routing route print where bgp && blackhole` after the first ban.

# (1) never accept anything inside our own networks, peers and next-hops
/routing filter rule
$protected
# (2) nothing shorter than the guards allow (host routes by default),
# (3) RFC 7999 BLACKHOLE required, (5) installed as a blackhole
add chain=f2b-in rule="if (afi ip && dst-len >= $min4 && bgp-communities includes $blackhole) { set blackhole yes; accept }"
add chain=f2b-in rule="if (afi ipv6 && dst-len >= $min6 && bgp-communities includes $blackhole) { set blackhole yes; accept }"
add chain=f2b-in rule="reject"
# the firewall announces nothing to the injector
add chain=f2b-out rule="reject"

# (4) at most $limit routes per family from the injector
/routing bgp connection
add name=f2b-injector as=$firewall_as$router_id local.role=ebgp local.address=$firewall \
    remote.address=$injector remote.as=$injector_as address-families=ip,ipv6 \
    input.filter=f2b-in output.filter-chain=f2b-out \
    input.limit-process-routes-ipv4=$limit input.limit-process-routes-ipv6=$limit

# A blackhole drops by destination; strict uRPF also drops the attacker's own
# IPv4 packets (use loose where routing is asymmetric). RouterOS has no IPv6
# equivalent.
/ip settings set rp-filter=strict
