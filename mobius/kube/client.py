"""The Kubernetes API client: httpx on trio, a client-side rate limit, errors by status.

Thin on purpose: Mobius reads a handful of resources and writes pod status, bindings, events,
nodes and leases. The rate limit is a token bucket sized for thousands of pods (the Go client's
default of 5-10 qps would take minutes to report a burst of status changes).
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Self

import httpx
import msgspec
import trio

from mobius.errors import ApiError, ApiUnreachable, api_error
from mobius.kube.credentials import Credentials
from mobius.metrics import API_REQUESTS


class _Status(msgspec.Struct):
    reason: str = ""
    message: str = ""
    code: int = 0


_status_decoder = msgspec.json.Decoder(_Status)
_encoder = msgspec.json.Encoder()


class TokenBucket:
    """Allow ``qps`` requests per second on average with bursts up to ``burst``."""

    def __init__(self, *, qps: float, burst: int):
        self.qps = qps
        self.burst = burst
        self._tokens = float(burst)
        self._stamp = trio.current_time() if _in_trio() else 0.0
        self._lock = trio.Lock()

    async def acquire(self) -> None:
        if math.isinf(self.qps):
            return
        async with self._lock:
            now = trio.current_time()
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.qps)
            self._stamp = now
            if self._tokens < 1.0:
                await trio.sleep((1.0 - self._tokens) / self.qps)
                self._tokens = 1.0
                self._stamp = trio.current_time()
            self._tokens -= 1.0

    def __repr__(self) -> str:
        return f"<TokenBucket qps={self.qps} burst={self.burst}>"


def _in_trio() -> bool:
    try:
        trio.lowlevel.current_task()
    except RuntimeError:
        return False
    return True


class KubeClient:
    """One connection pool to the API server; use as ``async with KubeClient(creds) as kube``."""

    def __init__(
        self,
        credentials: Credentials,
        *,
        qps: float = 200.0,
        burst: int = 400,
        timeout: float = 30.0,
        user_agent: str = "mobius",
    ):
        self.credentials = credentials
        headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if credentials.token:
            headers["Authorization"] = f"Bearer {credentials.token}"
        self._http = httpx.AsyncClient(
            base_url=credentials.server,
            verify=credentials.ssl_context(),
            headers=headers,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=32),
        )
        self._bucket = TokenBucket(qps=qps, burst=burst)
        self.request_count = 0

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    def __repr__(self) -> str:
        return f"<KubeClient {self.credentials.server} requests={self.request_count}>"

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        body: Any = None,
        content_type: str = "application/json",
    ) -> bytes:
        """Send one request; return the body or raise the ApiError subclass for the status."""
        await self._bucket.acquire()
        self.request_count += 1
        content = (
            None if body is None else (body if isinstance(body, bytes) else _encoder.encode(body))
        )
        headers = {"Content-Type": content_type} if content is not None else None
        try:
            resp = await self._http.request(
                method, path, params=params, content=content, headers=headers
            )
        except httpx.TransportError as exc:
            API_REQUESTS.labels(method, "0").inc()
            raise ApiUnreachable(f"{method} {path}: {exc!r}") from exc
        API_REQUESTS.labels(method, str(resp.status_code)).inc()
        if resp.status_code >= 400:
            raise _error(method, path, resp.status_code, resp.content)
        return resp.content

    async def get(self, path: str, type: type[Any], **params: str | int) -> Any:
        return msgspec.json.decode(await self.request("GET", path, params=params), type=type)

    async def create(self, path: str, body: Any) -> bytes:
        return await self.request("POST", path, body=body)

    async def merge_patch(self, path: str, body: Any) -> bytes:
        return await self.request(
            "PATCH", path, body=body, content_type="application/merge-patch+json"
        )

    async def delete(self, path: str, *, grace_period_seconds: int | None = None) -> bytes:
        body = None
        if grace_period_seconds is not None:
            body = {
                "kind": "DeleteOptions",
                "apiVersion": "v1",
                "gracePeriodSeconds": grace_period_seconds,
            }
        return await self.request("DELETE", path, body=body)

    async def stream_lines(
        self, path: str, params: Mapping[str, str | int], *, read_timeout: float
    ) -> AsyncIterator[bytes]:
        """Yield the lines of a streaming GET (a watch), raising ApiError on an error status."""
        await self._bucket.acquire()
        self.request_count += 1
        timeout = httpx.Timeout(30.0, read=read_timeout)
        try:
            async with self._http.stream("GET", path, params=params, timeout=timeout) as resp:
                if resp.status_code >= 400:
                    raise _error("GET", path, resp.status_code, await resp.aread())
                async for line in resp.aiter_lines():
                    if line:
                        yield line.encode()
        except httpx.TransportError as exc:
            raise ApiUnreachable(f"GET {path} (stream): {exc!r}") from exc


def _error(method: str, path: str, status: int, content: bytes) -> ApiError:
    try:
        st = _status_decoder.decode(content)
        reason, message = st.reason, st.message
    except msgspec.DecodeError:
        reason, message = "", content[:500].decode(errors="replace")
    return api_error(status, reason or str(status), message, method=method, url=path)
