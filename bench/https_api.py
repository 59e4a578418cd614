"""Bans per second through the HTTPS API against the Unix socket, as a ratio measured in the same run.

One daemon (kernel backend: real routes in a throw-away namespace) with both
APIs; the same number of new bans, one request at a time on one kept-alive
connection each: the local JSON-lines socket, then HTTPS (TLS 1.3, bearer
token, scope checks and an audit event per request) with certificates made by
trustme. The HTTPS listener is on the namespace's loopback.

Run as root: python3 bench/https_api.py [N]
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trustme

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from api_throughput import CONFIG as API_CONFIG  # noqa: E402  (the Unix-socket bench's daemon)
from report import figure  # noqa: E402  (bench/report.py)

from f2b_bgp.client import Client  # noqa: E402
from f2b_bgp.http_client import HttpClient, client_context  # noqa: E402
from f2b_bgp.tokens import digest  # noqa: E402

N = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 1000
SECRET = "f2b_bench-secret"
CONFIG = API_CONFIG + """[api.https]
listen = ["127.0.0.1:8443"]
certificate = "{dir}/cert.pem"
key = "{dir}/key.pem"
[api.metrics]
listen = []
[[api.tokens]]
name = "bench"
sha256 = "{sha}"
max_claims = {n}
max_rate = {n}
"""


def addresses(offset: int) -> list[str]:
    return [f"2001:db8:203:{offset}::{i:x}" for i in range(1, N + 1)]


def rate(call, prefixes: list[str]) -> float:  # type: ignore[no-untyped-def]
    start = time.perf_counter()
    for prefix in prefixes:
        answer = call("ban", prefix=prefix, jail="bench")
        assert answer["state"] == "active", answer
    return len(prefixes) / (time.perf_counter() - start)


def inside(work: Path) -> None:
    """Run in the namespace: start the daemon, measure both transports, stop it."""
    daemon = subprocess.Popen([sys.executable, "-m", "f2b_bgp", "--config", str(work / "c.toml"), "serve"],
                              stderr=open(work / "daemon.log", "w"), cwd=Path(__file__).resolve().parents[1])
    try:
        deadline = time.monotonic() + 30
        while "https-api" not in (work / "daemon.log").read_text():
            if time.monotonic() > deadline or daemon.poll() is not None:
                raise SystemExit(f"daemon not ready:\n{(work / 'daemon.log').read_text()[-2000:]}")
            time.sleep(0.05)
        with Client(str(work / "api.sock")) as local:
            unix = rate(local.call, addresses(1))
            local.call("flush")
        with HttpClient("https://127.0.0.1:8443", SECRET, client_context(str(work / "ca.pem"))) as remote:
            https = rate(remote.call, addresses(2))
        with Client(str(work / "api.sock")) as local:
            local.call("flush")
        print(f"{N} bans, one at a time on one connection (kernel backend, real routes):")
        print(f"  unix socket {unix:8.0f} bans/s")
        print(f"  https       {https:8.0f} bans/s   ratio https/unix = {https / unix:.2f}")
        figure(f"HTTPS API, {N} bans", "bans one at a time over HTTPS", https, unix, "bans/s", base="Unix socket",
               higher_is_better=True)
    finally:
        daemon.terminate()
        daemon.wait(30)


def main() -> None:
    if sys.argv[-1] == "--inside":
        inside(Path(os.environ["F2B_BENCH_DIR"]))
        return
    ns = "f2bbench" + secrets.token_hex(3)
    work = Path(tempfile.mkdtemp(prefix="f2b-bench-"))
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert.cert_chain_pems[0].write_to_path(str(work / "cert.pem"))
    cert.private_key_pem.write_to_path(str(work / "key.pem"))
    ca.cert_pem.write_to_path(str(work / "ca.pem"))
    (work / "c.toml").write_text(CONFIG.format(dir=work, n=2 * N + 10, sha=digest(SECRET)))
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "-n", ns, "link", "set", "lo", "up"], check=True)
        env = {**os.environ, "F2B_BENCH_DIR": str(work),
               "PYTHONPATH": os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                           os.environ.get("PYTHONPATH")]))}
        subprocess.run(["ip", "netns", "exec", ns, sys.executable, __file__, str(N), "--inside"], check=True,
                       env=env, timeout=600)
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)
        subprocess.run(["rm", "-rf", str(work)], check=False)


if __name__ == "__main__":
    main()
