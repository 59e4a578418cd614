"""Linux uRPF snippets shipped with every Linux firewall target: drop the attacker's own packets."""

from __future__ import annotations

from .text import header, template


def render(target: str, title: str) -> dict[str, str]:
    return {
        "f2b-urpf.nft": template("linux-urpf.nft", header=header("#", f"{title}, f2b-urpf.nft", target, [])),
        "90-f2b-urpf.conf": template("linux-urpf.sysctl", header=header("#", f"{title}, 90-f2b-urpf.conf", target, [])),
    }
