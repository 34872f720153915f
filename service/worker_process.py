"""One process for CPU work, spoken to over a socket the event loop reads itself.

``ProcessPoolExecutor`` hands every call through two threads of its own (a manager that
waits on the results, a feeder that pickles the calls) and back to the loop through a third
hop: about 1 ms of the service's CPU per call, measured, as much as the rest of a
certificate's processing. Here a call is pickled and written by the loop, the result read by
the loop when its socket is readable, and the process runs calls one after another in the
order sent, so results come back in that order.

Frames are an 8-byte length and a pickle: ``work`` (a picklable callable) one way,
``(ok, value_or_exception)`` the other. A process that ends (killed, crashed) fails every
call still waiting on it with ``BrokenProcessPool``, as the executor did.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import multiprocessing
import pickle
import signal
import socket
import struct
import traceback
from collections.abc import Callable
from concurrent.futures.process import BrokenProcessPool
from typing import Any

HEADER = struct.Struct(">Q")
READ_CHUNK = 1 << 20


class WorkerProcess:
    """A process running the calls sent to it, in order; ``submit`` from the event loop."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair()
        # forkserver: the process inherits none of this one's threads, event loop or sockets
        context = multiprocessing.get_context("forkserver")
        self._process = context.Process(target=_serve, args=(theirs,), daemon=True)
        try:
            self._process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        ours.setblocking(False)
        self._sock = ours
        self._pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._inbox = bytearray()
        self._outbox = bytearray()
        self._broken = False
        self._loop.add_reader(ours.fileno(), self._readable)

    def submit(self, work: Callable[[], Any]) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = self._loop.create_future()
        if self._broken:
            future.set_exception(BrokenProcessPool("The process has stopped."))
            return future
        payload = pickle.dumps(work, protocol=pickle.HIGHEST_PROTOCOL)
        self._pending.append(future)
        self._send(HEADER.pack(len(payload)) + payload)
        return future

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def kill(self) -> None:
        with contextlib.suppress(OSError):
            self._process.kill()

    def close(self) -> None:
        """Stop reading and writing: a process still running a call is left to ``kill``; an
        idle one ends when it sees the socket closed."""
        self._break("The process pool is closed.")

    async def wait(self) -> None:
        await asyncio.to_thread(self._process.join)

    # --- the loop's side of the socket ---

    def _send(self, frame: bytes) -> None:
        if self._outbox:
            self._outbox += frame
            return
        try:
            sent = self._sock.send(frame)
        except BlockingIOError:
            sent = 0
        except OSError:
            return  # the process is gone: the reader sees it, after the results it sent
        if sent < len(frame):
            self._outbox += frame[sent:]
            self._loop.add_writer(self._sock.fileno(), self._writable)

    def _writable(self) -> None:
        try:
            sent = self._sock.send(self._outbox)
        except BlockingIOError:
            return
        except OSError:
            sent = len(self._outbox)  # the process is gone: the reader sees it
        del self._outbox[:sent]
        if not self._outbox:
            self._loop.remove_writer(self._sock.fileno())

    def _readable(self) -> None:
        while True:
            try:
                chunk = self._sock.recv(READ_CHUNK)
            except BlockingIOError:
                break
            except OSError:
                chunk = b""
            if not chunk:
                self._answer()  # the results it sent before it ended are theirs
                self._break("A process in the process pool was terminated abruptly.")
                return
            self._inbox += chunk
        self._answer()

    def _answer(self) -> None:
        while len(self._inbox) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._inbox)
            if len(self._inbox) < HEADER.size + size:
                return
            try:
                ok, value = pickle.loads(self._inbox[HEADER.size : HEADER.size + size])
            except Exception as exc:
                ok, value = False, RuntimeError(f"unreadable result: {exc!r}")
            del self._inbox[: HEADER.size + size]
            future = self._pending.popleft()
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)  # never a StopIteration: ``_travelling`` wraps it

    def _break(self, reason: str) -> None:
        if self._broken:
            return
        self._broken = True
        self._loop.remove_reader(self._sock.fileno())
        if self._outbox:
            self._loop.remove_writer(self._sock.fileno())
        self._sock.close()
        while self._pending:
            future = self._pending.popleft()
            if not future.done():
                future.set_exception(BrokenProcessPool(reason))


def _serve(sock: socket.socket) -> None:
    """The process: run each call received, send back its result or its exception."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when this one ends
    with sock:
        while (frame := _receive(sock)) is not None:
            try:
                reply = (True, pickle.loads(frame)())
            except Exception as exc:
                reply = (False, _travelling(exc))
            try:
                payload = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as exc:
                text = f"{type(exc).__name__}: {exc}"
                payload = pickle.dumps((False, RuntimeError(text)))
            sock.sendall(HEADER.pack(len(payload)) + payload)


def _travelling(exc: Exception) -> Exception:
    """The exception with its traceback in this process as a note (the caller's logs show
    where it happened); a StopIteration, which no future can carry, wrapped."""
    if isinstance(exc, StopIteration):
        exc = RuntimeError(f"the work raised StopIteration: {exc!r}")
    exc.add_note("in the worker process:\n" + "".join(traceback.format_exception(exc)))
    return exc


def _receive(sock: socket.socket) -> bytes | None:
    header = _read_exactly(sock, HEADER.size)
    if header is None:
        return None
    (size,) = HEADER.unpack(header)
    return _read_exactly(sock, size)


def _read_exactly(sock: socket.socket, size: int) -> bytes | None:
    buffer = bytearray()
    while len(buffer) < size:
        chunk = sock.recv(min(READ_CHUNK, size - len(buffer)))
        if not chunk:
            return None  # the parent closed the socket (or is gone): stop
        buffer += chunk
    return bytes(buffer)
