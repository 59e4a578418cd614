"""The live-test lab: the docs/contracts.md topology in network namespaces, real BGP daemons, probes.

Modules (one job each):
  wait      wait_until(predicate, timeout, what), wait_until_empty(collect, timeout, what)
  process   Process(argv, netns, log, env): a foreground process stopped by PID
  netns     Topology(urpf=None|"loose"|"strict", extra_attackers=0, discard_routes=False), HOSTS
  frr, bird, openbgpd, gobgp, exabgp
            context managers around the real daemons, config FILE PATHS in, own temp dir and logs
  f2bbgp    F2bBgp(netns, config): the daemon and its CLI; lab_config() the lab's daemon config
  fail2ban  Fail2banServer: a real fail2ban-server with its own config dir; run_filter(), append()
  peers     FrrPeer/BirdPeer/OpenBgpdPeer/GobgpPeer: established(), rib(); kernel_routes(); community()
  probe     probe() -> (icmp_ok, tcp_ok), ServerListener, nstat() absolute counters
  asserts   assert_route / assert_no_route / assert_established / assert_kernel_blackhole ...
  fixtures  pytest fixtures (topology, urpf_topology, topology_factory, server_listener, lab_stack)
  faults, never_reads, storm, daemon_down
            fault scenarios returning what they measured (Tally: acknowledged/lost/stale/duplicated),
            shared by tests/live/test_faults.py and bench/faults.py
  mounts    a daemon's own mount namespace: its database on a tiny tmpfs, or read-only
  impostor  knock(socket, uid): a process that is not ExaBGP's bridge connects to its socket

By hand:  python3 -m tests.lab --help   (brings the lab up and prints how to reach it)
Set F2B_LAB_KEEP=1 to keep daemon work dirs (configs, logs) after a run.
"""
