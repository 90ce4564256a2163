"""LIST + WATCH with bookmarks, relist on 410 Gone and reconnect with backoff.

One function serves every watched kind: it LISTs, hands the whole list to ``on_list`` (so the
caller can drop what disappeared while it was not watching), then WATCHes from the list's
resourceVersion, handing each event to ``on_event``. A 410 Gone or an expired bookmark means
relist; transport errors mean reconnect with capped exponential backoff.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NoReturn, TypeVar

import msgspec
import trio

from mobius.errors import ApiError, ApiUnreachable, Gone, ParseError
from mobius.kube.client import KubeClient
from mobius.models import ListMeta, WatchEvent

log = logging.getLogger(__name__)

T = TypeVar("T")

_event_decoder = msgspec.json.Decoder(WatchEvent)


class _Meta(msgspec.Struct):
    resource_version: str = msgspec.field(default="", name="resourceVersion")


class _Bookmark(msgspec.Struct):
    metadata: _Meta = msgspec.field(default_factory=_Meta)


class _ErrorStatus(msgspec.Struct):
    code: int = 0
    reason: str = ""
    message: str = ""


_bookmark_decoder = msgspec.json.Decoder(_Bookmark)
_status_decoder = msgspec.json.Decoder(_ErrorStatus)


async def list_and_watch(
    kube: KubeClient,
    path: str,
    *,
    item_type: type[T],
    on_list: Callable[[list[T]], Awaitable[None]],
    on_event: Callable[[str, T], Awaitable[None]],
    params: Mapping[str, str] | None = None,
    watch_timeout: int = 300,
    max_backoff: float = 30.0,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Keep ``on_list``/``on_event`` in step with the objects at ``path`` forever."""

    list_type = msgspec.defstruct(
        "List",
        [
            ("metadata", ListMeta, msgspec.field(default_factory=ListMeta)),
            ("items", list[item_type], []),  # type: ignore[valid-type]
        ],
    )
    list_decoder = msgspec.json.Decoder(list_type)
    item_decoder = msgspec.json.Decoder(item_type)
    base = dict(params or {})
    started = False
    backoff = 0.5
    resource_version = ""
    while True:
        try:
            if not resource_version:
                body = await kube.request("GET", path, params=base)
                listed: Any = list_decoder.decode(body)
                resource_version = listed.metadata.resource_version
                await on_list(listed.items)
                if not started:
                    task_status.started()
                    started = True
            watch_params = {
                **base,
                "watch": "1",
                "resourceVersion": resource_version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(watch_timeout),
            }
            async for line in kube.stream_lines(
                path, watch_params, read_timeout=watch_timeout + 30
            ):
                event = _event_decoder.decode(line)
                if event.type == "ERROR":
                    status = _status_decoder.decode(event.object)
                    if status.code == 410:
                        raise Gone(
                            410,
                            status.reason or "Expired",
                            status.message,
                            method="WATCH",
                            url=path,
                        )
                    raise ParseError("watch ERROR event", line.decode(errors="replace")[:500])
                if event.type == "BOOKMARK":
                    resource_version = _bookmark_decoder.decode(
                        event.object
                    ).metadata.resource_version
                    continue
                obj = item_decoder.decode(event.object)
                rv = getattr(getattr(obj, "metadata", None), "resource_version", "")
                if rv:
                    resource_version = rv
                await on_event(event.type, obj)
            backoff = 0.5
        except Gone:
            log.info("watch of %s expired; relisting", path)
            resource_version = ""
        except (ApiUnreachable, ApiError, ParseError, msgspec.DecodeError) as exc:
            log.warning("watch of %s failed (%s); retrying in %.1fs", path, exc, backoff)
            await trio.sleep(backoff)
            backoff = min(backoff * 2, max_backoff)
            if isinstance(exc, ApiError | ParseError | msgspec.DecodeError):
                resource_version = ""
