"""The central's and the edge's config keys: every problem with its dotted key."""

from __future__ import annotations

from pathlib import Path

import pytest

from f2b_bgp.config import Listen, parse_config
from f2b_bgp.errors import ConfigError

SHA = "0" * 64
TOKEN = {"name": "web1", "sha256": SHA}
REMOTE = {"name": "central1", "url": "https://192.0.2.10:8443", "token_file": "/etc/f2b-bgp/c.token"}


@pytest.mark.parametrize("raw, problem", [
    ({"api": {"https": {"listen": ["192.0.2.10:8443"]}}}, "api.https: listen is set: certificate and key"),
    ({"api": {"https": {"listen": ["central:8443"]}}}, "api.https.listen[0]:"),
    ({"api": {"https": {"listen": ["192.0.2.10"]}}}, "api.https.listen[0]: '192.0.2.10' is not ADDRESS:PORT"),
    ({"api": {"https": {"certificate": "cert.pem"}}}, "api.https.certificate: must be an absolute path"),
    ({"api": {"https": {"port": 8443}}}, "api.https.port: unknown key"),
    ({"api": {"tokens": [{**TOKEN, "sha256": "abc"}]}}, "api.tokens[0].sha256: must be 64 lower-case hex"),
    ({"api": {"tokens": [{**TOKEN, "name": "a/b"}]}}, "api.tokens[0].name: must be 1 to 32"),
    ({"api": {"tokens": [{"name": "web1"}]}}, "api.tokens[0].sha256: is required"),
    ({"api": {"tokens": [{**TOKEN, "operations": ["ban", "reboot"]}]}}, "api.tokens[0].operations[1]: 'reboot'"),
    ({"api": {"tokens": [{**TOKEN, "operations": ["flush"]}]}}, "api.tokens[0].operations: flush act on every"),
    ({"api": {"tokens": [{**TOKEN, "forbidden": ["192.0.2.1/24"]}]}}, "api.tokens[0].forbidden[0]: host bits"),
    ({"api": {"tokens": [{**TOKEN, "max_claims": -1}]}}, "api.tokens[0].max_claims: must be between"),
    ({"api": {"tokens": [TOKEN, {**TOKEN, "name": "web2"}]}}, "api.tokens[1]: name 'web2' or its sha256 used twice"),
    ({"api": {"tokens": [{**TOKEN, "colour": "red"}]}}, "api.tokens[0].colour: unknown key"),
    ({"backends": {"remote": [{**REMOTE, "url": "http://192.0.2.10"}]}}, "backends.remote[0].url: must be https://"),
    ({"backends": {"remote": [{**REMOTE, "name": "exabgp"}]}}, "backends.remote[0].name: 'exabgp' is another"),
    ({"backends": {"remote": [{"name": "c"}]}}, "backends.remote[0].url: is required"),
])
def test_problems_name_their_key(raw: dict, problem: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(raw)
    assert any(p.startswith(problem) for p in err.value.problems), err.value.problems


def test_a_full_central_and_edge_config() -> None:
    config = parse_config({
        "api": {"https": {"listen": ["192.0.2.10:8443", "[2001:db8::10]:8443"], "certificate": "/c.pem",
                          "key": "/c.key", "client_ca": "/ca.pem"},
                "metrics": {"listen": []},
                "tokens": [{**TOKEN, "max_claims": 5, "forbidden": ["192.0.2.0/24"]}]},
        "backends": {"kernel": {"enabled": False}, "remote": [REMOTE]},
    })
    assert config.api.https.listen == (Listen("192.0.2.10", 8443), Listen("2001:db8::10", 8443))
    assert [str(x) for x in config.api.https.listen] == ["192.0.2.10:8443", "[2001:db8::10]:8443"]
    assert config.api.metrics_listen == ()
    [token] = config.api.tokens
    assert (token.max_claims, token.forbidden, token.own_claims_only) == (5, ("192.0.2.0/24",), True)
    [remote] = config.remotes
    assert (remote.name, remote.token_file, remote.timeout) == ("central1", Path("/etc/f2b-bgp/c.token"), 5.0)


def test_check_config_warns_about_unreadable_tls_and_token_files(tmp_path: Path) -> None:
    from f2b_bgp.config import config_warnings

    token = tmp_path / "c.token"
    token.write_text("f2b_x\n")
    config = parse_config({
        "api": {"https": {"listen": ["192.0.2.10:8443"], "certificate": "/nonexistent/c.pem", "key": str(token)}},
        "backends": {"remote": [{**REMOTE, "token_file": str(token), "ca_file": "/nonexistent/ca.pem"}]},
    })
    warnings = [w for w in config_warnings(config) if "not readable" in w]
    assert warnings == ["api.https.certificate: /nonexistent/c.pem is not readable here: the daemon will not start "
                        "with it", "backends.remote[0].ca_file: /nonexistent/ca.pem is not readable here: the "
                        "daemon will not start with it"]
