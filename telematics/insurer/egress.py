"""Where webhook deliveries may go: public addresses only, unless allowed.

An insurer registers any URL; without this, the server would POST signed bodies into
its own network (the database host, a cloud metadata service, an admin port). The check
runs at delivery time on the addresses the name resolves to (a DNS answer can change
after registration); ``TELEMATICS_WEBHOOK_ALLOW_PRIVATE=1`` lifts it for tests and for
receivers deliberately on the private network.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

ALLOW_PRIVATE_ENV = "TELEMATICS_WEBHOOK_ALLOW_PRIVATE"


def allow_private() -> bool:
    return (os.environ.get(ALLOW_PRIVATE_ENV) or "").lower() in ("1", "true", "yes")


def is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    return ip.is_global and not ip.is_multicast


class BlockedAddress(OSError):
    """The webhook host is (or resolves only to) a private, loopback or reserved address."""


class PublicOnlyResolver(AbstractResolver):
    """Resolves like aiohttp's default, then drops every non-public address."""

    def __init__(self) -> None:
        self._inner = DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if is_public(r["host"])]
        if not public:
            raise BlockedAddress(f"{host} resolves only to non-public addresses")
        return public

    async def close(self) -> None:
        await self._inner.close()


def check_literal(host: str) -> None:
    """aiohttp skips the resolver for IP literals: check those here."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return
    if not is_public(host.strip("[]")):
        raise BlockedAddress(f"{host} is not a public address")


def connector_options() -> dict[str, Any]:
    return {} if allow_private() else {"resolver": PublicOnlyResolver()}
