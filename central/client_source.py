"""Who is calling: the peer's address, or the forwarded one when the peer is a trusted proxy.

Failed authentications are counted and throttled per source, so the source must be one a
client cannot choose: `X-Forwarded-For` is read only when the connection comes from a proxy
head office listed (`--trusted-proxy`), and then from the right, skipping further trusted
proxies, since a client may put anything it likes at the left of the header.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from aiohttp import web

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class TrustedProxies:
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, items: Iterable[str]) -> TrustedProxies:
        """From addresses or networks ('10.0.0.5', '10.0.0.0/8'); raises ValueError."""
        return cls(tuple(ipaddress.ip_network(i.strip(), strict=False) for i in items))

    def trusts(self, address: IPAddress) -> bool:
        return any(address in n for n in self.networks)


NO_PROXIES = TrustedProxies()


def _address(text: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


def source_of(request: web.Request, proxies: TrustedProxies) -> str:
    peer_text = request.remote or "unknown"
    peer = _address(peer_text)
    if peer is None or not proxies.trusts(peer):
        return peer_text
    hops = [h for v in request.headers.getall("X-Forwarded-For", ()) for h in v.split(",")]
    for hop in reversed(hops):
        address = _address(hop)
        if address is None:
            return peer_text  # a hop we cannot read: the proxy's own address is what we know
        if not proxies.trusts(address):
            return str(address)
    return peer_text
