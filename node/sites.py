"""Fetching and verifying creators' key documents from their web sites (httpx).

Rules: HTTPS, except for loopback hosts or when plain HTTP is explicitly
allowed; at most 64 KiB; 5 s per network step and 10 s in all; redirects only
within the same origin (at most 3).  The verdict is a :class:`SiteVerdict`,
never an exception: a site that is down, slow or wrong is an answer too.
"""

from __future__ import annotations

import functools
import ipaddress
import ssl
import urllib.parse
from dataclasses import dataclass
from typing import Any

import certifi
import httpx
import trio

from ..protocol import messages as m
from ..protocol import sitekeys
from ..protocol.checks import check_time
from ..protocol.errors import LocalError, RemoteError
from ..protocol.things import normalise_origin

STEP_TIMEOUT = 5.0
TOTAL_TIMEOUT = 10.0
MAX_REDIRECTS = 3


@dataclass(frozen=True)
class SiteVerdict:
    origin: str
    valid: bool
    reason: str | None
    document: m.Signed[m.KeyDocument] | None = None

    def as_json(self) -> dict[str, Any]:
        d = self.document
        return {"origin": self.origin, "creator": d.signer_did if d else None,
                "name": d.body.name if d else None, "payto": list(d.body.payto) if d else [],
                "valid": self.valid, "reason": self.reason}


def is_loopback(host: str) -> bool:
    host = host.strip("[]")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def origin_of_input(text: str) -> str:
    """An origin from what a user typed: an origin, a URL on the site, or a bare host."""
    text = text.strip()
    parts = urllib.parse.urlsplit(text if "://" in text else "https://" + text)
    if not parts.hostname:
        raise LocalError(f"not a web address: {text!r}", code="bad-origin")
    netloc = parts.netloc.rsplit("@", 1)[-1]
    return normalise_origin(f"{parts.scheme}://{netloc}")


async def fetch(origin: str, *, allow_http: bool = False, now: int | None = None,
                transport: httpx.AsyncBaseTransport | None = None) -> SiteVerdict:
    """Fetch ``origin``'s well-known document and verify it for that origin (and, given
    ``now``, that it is already valid)."""
    try:
        origin = normalise_origin(origin)
    except LocalError as exc:
        return SiteVerdict(origin, False, f"bad-origin: {exc}")
    scheme = origin.partition("://")[0]
    host = urllib.parse.urlsplit(origin).hostname or ""
    if scheme == "http" and not (allow_http or is_loopback(host)):
        return SiteVerdict(origin, False, "insecure: plain HTTP is allowed only for loopback "
                                          "hosts (or with --allow-http)")
    url = origin + sitekeys.WELL_KNOWN_PATH
    timeout = httpx.Timeout(STEP_TIMEOUT)
    try:
        with trio.fail_after(TOTAL_TIMEOUT):
            async with httpx.AsyncClient(timeout=timeout, follow_redirects=False,
                                         transport=transport, trust_env=False,
                                         verify=_tls_context()) as client:
                body = await _get(client, url, origin)
    except trio.TooSlowError:
        return SiteVerdict(origin, False, f"timeout: no complete answer within "
                                          f"{TOTAL_TIMEOUT:g} s")
    except _Refused as exc:
        return SiteVerdict(origin, False, str(exc))
    except httpx.TimeoutException as exc:
        return SiteVerdict(origin, False, f"timeout: {type(exc).__name__} after "
                                          f"{STEP_TIMEOUT:g} s of silence")
    except httpx.HTTPError as exc:
        return SiteVerdict(origin, False, f"unreachable: {type(exc).__name__}: {exc}")
    try:
        doc = sitekeys.parse(body, origin)
        if now is not None:
            check_time(doc, now)
    except RemoteError as exc:
        return SiteVerdict(origin, False, exc.reason)
    return SiteVerdict(origin, True, None, doc)


class _Refused(Exception):
    pass


@functools.cache
def _tls_context() -> ssl.SSLContext:
    """One TLS context for every site check: loading the CA bundle costs ~30 ms of CPU,
    which each new client paid again (9 times per node at a month end of 8 sites)."""
    return ssl.create_default_context(cafile=certifi.where())


async def _get(client: httpx.AsyncClient, url: str, origin: str) -> bytes:
    for _ in range(MAX_REDIRECTS + 1):
        async with client.stream("GET", url, headers={"Accept": "application/json"}) as resp:
            if resp.is_redirect:
                target = urllib.parse.urljoin(url, resp.headers.get("location", ""))
                try:
                    target_origin = origin_of_input(target)
                except LocalError:
                    raise _Refused(f"redirect: bad Location {target!r}") from None
                if target_origin != origin:
                    raise _Refused(f"redirect: {origin} redirects to another origin "
                                   f"({target_origin}); refused")
                url = target
                continue
            if resp.status_code != 200:
                raise _Refused(f"http-{resp.status_code}: {url} answered {resp.status_code}")
            declared = resp.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > sitekeys.MAX_WELL_KNOWN:
                raise _Refused(f"too-large: {declared} bytes (at most "
                               f"{sitekeys.MAX_WELL_KNOWN})")
            body = bytearray()
            async for chunk in resp.aiter_bytes():
                body += chunk
                if len(body) > sitekeys.MAX_WELL_KNOWN:
                    raise _Refused(f"too-large: more than {sitekeys.MAX_WELL_KNOWN} bytes")
            return bytes(body)
    raise _Refused(f"redirect: more than {MAX_REDIRECTS} redirects")


def fetch_blocking(origin: str, allow_http: bool = False, now: int | None = None
                   ) -> SiteVerdict:
    """For the CLI: run :func:`fetch` in its own trio loop."""
    return trio.run(functools.partial(fetch, origin, allow_http=allow_http, now=now))
