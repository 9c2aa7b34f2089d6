"""The one module that talks to mini-racer (``py_mini_racer``).

An :class:`Isolate` is one V8 isolate with one context, driven from the
host's asyncio loop. Everything the JavaScript runtime needs from V8 is here:
create, evaluate a script under a wall-clock timeout, set the heap limit,
close. Only strings and plain numbers are ever read back; a result of any
other type is reported as :class:`EngineProtocolError` without being
inspected, so no plugin-controlled getter, proxy or ``toString`` can run on
the host's behalf.

Facts about mini-racer 0.14 this module is built around:

* a context created inside a running loop is driven by that loop; each eval
  is a hand-off to the isolate's own thread;
* only a *running* task can be cancelled (V8 ``TerminateExecution``); the
  microtask checkpoint mini-racer runs after each task belongs to no task,
  so code spinning there can only be stopped by freeing the context, which
  terminates whatever runs (see :meth:`Isolate.close`);
* freeing a context joins the isolate's thread, so it is done on a worker
  thread, never on the loop.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import os
import threading
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from py_mini_racer import JSEvalException, JSOOMException, JSParseException, MiniRacer, mini_racer

_log = logging.getLogger("hostrt.runtime.js")

#: Extra heap V8 needs above what plugin code uses (the context, the shim).
HEAP_OVERHEAD_BYTES = 4 * 1024 * 1024
#: How often a running script's effect on the process's resident memory is
#: checked (see :meth:`Isolate.eval`).
RSS_CHECK_INTERVAL_S = 0.025
#: Growth of the process allowed during one script beyond the plugin's heap
#: and ArrayBuffer allowances (other work of the host runs meanwhile).
RSS_SLACK_BYTES = 64 * 1024 * 1024
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_bytes() -> int | None:
    """The process's resident set size, or None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as handle:
            return int(handle.read().split()[1]) * _PAGE
    except (OSError, ValueError, IndexError):
        return None


class EngineError(Exception):
    """Base of what :meth:`Isolate.eval` raises (host-internal; the runtime
    turns these into :class:`hostrt.errors.PluginError` subclasses)."""


class EngineTimeout(EngineError):
    """The script did not finish within its timeout and was terminated."""


class EngineOutOfMemory(EngineError):
    """The isolate hit its hard heap limit."""


class EngineScriptError(EngineError):
    """V8 refused or aborted the script (a syntax error, an exception the
    shim did not catch). ``text`` is mini-racer's summary: ``file:line:
    message`` plus a source excerpt and, for runtime errors, the stack."""

    def __init__(self, text: str, *, parse: bool) -> None:
        super().__init__(text)
        self.text = text
        self.parse = parse


class EngineProtocolError(EngineError):
    """The script returned something other than a string."""


class EngineClosed(EngineError):
    """The isolate is closed (or being closed)."""


_live: "weakref.WeakSet[Isolate]" = weakref.WeakSet()


@atexit.register
def _free_leftovers() -> None:
    # A context left to the garbage collector at interpreter exit can hang
    # the process; a host application that forgot Host.close() must still
    # be able to exit.
    for isolate in list(_live):
        isolate._closed = True
        isolate._free()


class Isolate:
    """One V8 isolate bound to the running asyncio loop."""

    def __init__(self, maker: Any, racer: Any, memory_bytes: int) -> None:
        self._maker = maker
        self._racer = racer
        self._memory_bytes = memory_bytes
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        self._inflight: set[asyncio.Task[Any]] = set()

    @classmethod
    def create(cls, memory_bytes: int) -> "Isolate":
        """Create an isolate on the running loop with a hard heap limit of
        ``memory_bytes`` (plus :data:`HEAP_OVERHEAD_BYTES`)."""
        maker = mini_racer(asyncio.get_running_loop())
        racer = maker.__enter__()
        isolate = cls(maker, racer, memory_bytes)
        _live.add(isolate)
        try:
            racer.set_hard_memory_limit(memory_bytes + HEAP_OVERHEAD_BYTES)
        except BaseException:
            isolate._free()
            raise
        return isolate

    @property
    def closed(self) -> bool:
        return self._closed

    def out_of_memory(self) -> bool:
        """True once the heap limit was reached (the isolate is then dead)."""
        if self._closed:
            return False
        try:
            return bool(self._racer.was_hard_memory_limit_reached())
        except Exception:  # noqa: BLE001 - a dead isolate: report no
            return False

    async def eval(self, code: str, timeout_s: float) -> str:
        """Run ``code`` as a script and return its string result.

        Raises :class:`EngineTimeout` (the script was terminated),
        :class:`EngineOutOfMemory`, :class:`EngineScriptError`,
        :class:`EngineProtocolError` or :class:`EngineClosed`.
        """
        if self._closed:
            raise EngineClosed("isolate is closed")
        task = asyncio.ensure_future(self._racer.eval_cancelable(code))
        self._inflight.add(task)
        guard = _MemoryGuard(task, self._memory_bytes)
        try:
            result = await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except asyncio.TimeoutError:
            if guard.tripped:
                raise EngineOutOfMemory(guard.describe()) from None
            # Cancelling the task makes mini-racer terminate the running script.
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
            raise EngineTimeout(f"script ran longer than {timeout_s:.3f} s") from None
        except asyncio.CancelledError:
            if guard.tripped:
                raise EngineOutOfMemory(guard.describe()) from None
            task.cancel()
            raise
        except JSOOMException:
            raise EngineOutOfMemory("heap limit reached") from None
        except JSParseException as exc:
            raise EngineScriptError(str(exc), parse=True) from None
        except JSEvalException as exc:
            if self.out_of_memory():
                raise EngineOutOfMemory("heap limit reached") from None
            if self._closed:
                raise EngineClosed("isolate was closed while running") from None
            raise EngineScriptError(str(exc), parse=False) from None
        finally:
            guard.stop()
            self._inflight.discard(task)
        if guard.tripped:
            raise EngineOutOfMemory(guard.describe())
        if type(result) is not str:
            _release(result)
            if self.out_of_memory():
                raise EngineOutOfMemory("heap limit reached")
            raise EngineProtocolError(f"script returned {type(result).__name__}, not a string")
        return result

    async def close(self) -> None:
        """Terminate whatever runs in the isolate and free it. Idempotent:
        every caller waits for the same freeing to finish.

        Freeing joins the isolate's thread; it happens on a helper thread so
        the loop stays responsive even if V8 takes a moment to stop.
        """
        if self._closing is None:
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self._closed = True
        for task in list(self._inflight):
            task.cancel()
        for task in list(self._inflight):
            with contextlib.suppress(BaseException):
                await task
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def free() -> None:
            try:
                self._free()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop may be gone at interpreter exit
                    loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        threading.Thread(target=free, name="hostrt-js-free", daemon=True).start()
        await done

    def _free(self) -> None:
        maker, self._maker, self._racer = self._maker, None, None
        if maker is not None:
            try:
                maker.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - close never raises
                _log.exception("freeing a V8 isolate failed")


def run_syntax_check(code: str) -> None:
    """Compile and evaluate ``code`` -- which must not run anything, such as
    a function expression that is never called -- in a throwaway isolate.
    Raises :class:`EngineScriptError`.

    The isolate lives on a short-lived thread with no event loop, so
    mini-racer gives it a loop of its own: this works from synchronous code
    and from inside a running loop alike.
    """
    def work() -> None:
        with MiniRacer() as racer:
            racer.set_hard_memory_limit(256 * 1024 * 1024)
            try:
                racer.eval(code, timeout_sec=30)
            except JSParseException as exc:
                raise EngineScriptError(str(exc), parse=True) from None
            except JSEvalException as exc:
                raise EngineScriptError(str(exc), parse=False) from None

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="hostrt-js-check") as pool:
        pool.submit(work).result()


class _MemoryGuard:
    """Host-side backstop for memory V8's heap limit does not see.

    While a script runs, the process's resident memory is sampled; if it grew
    by more than the plugin's heap plus ArrayBuffer allowance (twice its
    memory limit) plus :data:`RSS_SLACK_BYTES`, the script is terminated.
    The shim already refuses ArrayBuffer allocations past the limit; this
    catches whatever gets around it, at the price of being coarse: the host's
    own allocations during the script count too.
    """

    def __init__(self, task: "asyncio.Future[Any]", memory_bytes: int) -> None:
        self.tripped = False
        self._task = task
        self._start = resident_bytes()
        self._allowed = 2 * memory_bytes + HEAP_OVERHEAD_BYTES + RSS_SLACK_BYTES
        self._grown = 0
        self._handle: asyncio.TimerHandle | None = None
        if self._start is not None:
            self._handle = asyncio.get_running_loop().call_later(RSS_CHECK_INTERVAL_S, self._check)

    def _check(self) -> None:
        self._handle = None
        now = resident_bytes()
        if now is None or self._start is None or self._task.done():
            return
        self._grown = now - self._start
        if self._grown > self._allowed:
            self.tripped = True
            self._task.cancel()  # mini-racer terminates the running script
            return
        self._handle = asyncio.get_running_loop().call_later(RSS_CHECK_INTERVAL_S, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def describe(self) -> str:
        return (f"the process grew by {self._grown // (1024 * 1024)} MiB while the plugin ran "
                f"(allowed {self._allowed // (1024 * 1024)} MiB)")


def _release(value: Any) -> None:
    """Drop a non-string result without reading it (mini-racer frees the
    underlying handle when the wrapper is collected)."""
    del value


__all__ = [
    "EngineClosed",
    "EngineError",
    "EngineOutOfMemory",
    "EngineProtocolError",
    "EngineScriptError",
    "EngineTimeout",
    "Isolate",
]
