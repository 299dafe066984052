"""Text frames from aiohttp's parser straight to the connection, without a task wake-up.

aiohttp's ``WebSocketResponse`` queues every parsed message and wakes the task blocked in
``receive()``: a future, a task step and three coroutine frames per frame, 7–20 µs of a
worker's ~190 µs per frame at 5,000 units (BENCHMARKS.md, "How much of that is aiohttp's
receive path?"). Here, while the connection is idle, the parser hands each text frame to
the connection's handler at once. A frame whose handling must wait (a model's
micro-batch, a full writer backlog, the frame-rate limit, closing) hands that wait to
the connection's task, and until the task has caught up every message takes aiohttp's
own path (its queue, flow control and ``receive()``: ping, close and errors included),
in arrival order.

aiohttp has no public hook for this: :class:`DeviceSocket` repeats its private
``_post_start`` with a :class:`FrameFeed` as the queue. ``tests/ingest/test_feed.py``
fails when aiohttp's own ``_post_start`` changes, so an upgrade is reviewed here first.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMessage, WSMsgType, web
from aiohttp._websocket.reader import WebSocketDataQueue, WebSocketReader
from aiohttp.helpers import DEFAULT_CHUNK_SIZE

#: A text frame's handler: None when it is done, else what is left to wait for.
Handler = Callable[[bytes], Awaitable[None] | None]
#: A message taken through ``receive()``; False once the connection is over.
MessageHandler = Callable[[WSMessage], Awaitable[bool]]

_TEXT = WSMsgType.TEXT


class FrameFeed(WebSocketDataQueue):
    """aiohttp's message queue, with a short cut for text frames while a handler is set."""

    def __init__(
        self,
        protocol: Any,
        limit: int,
        *,
        loop: asyncio.AbstractEventLoop,
        closing: Callable[[], bool],
    ) -> None:
        super().__init__(protocol, limit, loop=loop)
        # Once our side closes, frames are left to aiohttp's close(), which reads (and
        # drops) them while it waits for the peer's close frame, as without this feed.
        self._closing = closing
        self.handler: Handler | None = None
        self._handover: asyncio.Future[Awaitable[None] | None] | None = None

    def feed_data(self, data: Any, size: int) -> None:
        """Called by aiohttp's parser for every message; the handler must not raise."""
        handler = self.handler
        if handler is not None and data.type is _TEXT and not self._closing():
            rest = handler(data.data)
            if rest is not None:
                self._hand_over(rest)
            return
        super().feed_data(data, size)
        if handler is not None:
            self._hand_over(None)

    def feed_eof(self) -> None:
        super().feed_eof()
        if self.handler is not None:
            self._hand_over(None)

    def set_exception(self, *args: Any) -> None:
        super().set_exception(*args)
        if self.handler is not None:
            self._hand_over(None)

    def has_queued(self) -> bool:
        """Whether ``receive()`` has something to return at once (a message, EOF, error)."""
        return bool(self._buffer) or self.is_eof() or self.exception() is not None

    async def idle(self, handler: Handler) -> Awaitable[None] | None:
        """Hand text frames to ``handler`` as they are parsed, until one leaves something
        to wait for (returned) or a message needs ``receive()`` (None).

        Call only when :meth:`has_queued` is false: queued messages come first."""
        future: asyncio.Future[Awaitable[None] | None] = asyncio.get_running_loop().create_future()
        self._handover = future
        self.handler = handler
        try:
            return await future
        finally:
            self.handler = None
            self._handover = None

    def _hand_over(self, rest: Awaitable[None] | None) -> None:
        self.handler = None
        future, self._handover = self._handover, None
        if future is not None and not future.done():
            future.set_result(rest)


class DeviceSocket(web.WebSocketResponse):
    """A ``WebSocketResponse`` whose parser feeds a :class:`FrameFeed`."""

    feed: FrameFeed

    def _post_start(self, request: web.BaseRequest, protocol: str | None, writer: Any) -> None:
        # aiohttp 3.14's WebSocketResponse._post_start, with FrameFeed for the queue.
        self._ws_protocol = protocol
        self._writer = writer
        self._reset_heartbeat()
        loop = self._loop
        assert loop is not None
        self._reader = self.feed = FrameFeed(
            request._protocol, DEFAULT_CHUNK_SIZE, loop=loop, closing=lambda: self._closed
        )
        self._parser = WebSocketReader(
            self._reader,
            self._max_msg_size,
            compress=bool(self._compress),
            decode_text=self._decode_text,
        )
        cb = None if self._heartbeat is None else self._on_data_received
        request.protocol.set_parser(self._parser, data_received_cb=cb)
        request.protocol.keep_alive(False)

    async def serve(
        self, on_frame: Handler, on_message: MessageHandler, over: Callable[[], bool]
    ) -> None:
        """Until ``on_message`` or ``over()`` says the connection is over: while idle,
        text frames go to ``on_frame`` as they are parsed; this task awaits what they
        leave to wait for, and takes every message through ``receive()`` (and
        ``on_message``) until it has caught up."""
        feed = self.feed
        while True:
            while feed.has_queued():
                if not await on_message(await self.receive()):
                    return
            if over():
                return
            rest = await feed.idle(on_frame)
            if rest is not None:
                await rest
