"""The one module that talks to mini-racer (``py_mini_racer``).

An :class:`Isolate` is one V8 isolate with one context, driven from the
host's asyncio loop. Everything the JavaScript runtime needs from V8 is here:
create, post scripts and collect their results under a wall-clock timeout,
set the heap limit, close. Only string results are ever read; a result of
any other type is reported as :class:`EngineProtocolError` without being
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
  thread, never on the loop;
* tasks posted with the "uncancellable" callback id put their results, one
  per task and in posting order (a cancelled task yields a termination),
  into one queue: that is how results are collected here (a private API of
  0.14, hence the version pin).
"""

from __future__ import annotations

import asyncio
import atexit
import collections
import contextlib
import logging
import os
import queue
import threading
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from py_mini_racer import JSEvalException, JSOOMException, JSParseException, MiniRacer, mini_racer

_log = logging.getLogger("hostrt.runtime.js")

#: Extra heap V8 needs above what plugin code uses (the context, the shim).
HEAP_OVERHEAD_BYTES = 4 * 1024 * 1024
#: How long the loop may block waiting for a script's result before it
#: hands the wait to a thread (most scripts take microseconds).
FAST_WAIT_S = 0.0005
#: The same while a plugin loads: the shim and the plugin's top level take a
#: millisecond or more, and loading is rare.
LOAD_WAIT_S = 0.02
#: How long closing waits for an isolate to stop before abandoning it.
FREE_TIMEOUT_S = 5.0
#: How often the background result thread checks whether it is still needed.
DRAIN_POLL_S = 0.05
#: How often a running script's effect on the process's resident memory is
#: checked (see :class:`_Watchdog`).
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
        self.index = 0  # which of several scripts posted together failed


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
        if isolate._closing is not None:
            continue  # being freed (or abandoned) already
        isolate._closed = True
        worker = threading.Thread(target=isolate._free, daemon=True)
        worker.start()
        worker.join(FREE_TIMEOUT_S)  # a stuck isolate must not keep the process from exiting


class Script:
    """A script posted to the isolate's thread and not yet collected.

    Posting is a hand-off only: the isolate runs scripts in the order they
    were posted, each followed by mini-racer's microtask checkpoint.
    """

    __slots__ = ("future", "task_id", "code_handle", "seq")

    def __init__(self, future: "asyncio.Future[Any]", code_handle: Any, seq: int) -> None:
        self.future = future
        self.task_id: int | None = None
        self.code_handle = code_handle  # kept alive until the script ran
        self.seq = seq


class Isolate:
    """One V8 isolate bound to the running asyncio loop.

    Scripts are posted and collected through mini-racer's task API directly
    (its ``Context`` internals, which is why mini-racer is pinned): one
    future per script and one timer per wait, instead of an asyncio task,
    a shield and a ``wait_for`` each. A script's time is counted from when
    the host starts waiting for it (see :meth:`collect`).
    """

    def __init__(self, maker: Any, racer: Any, memory_bytes: int) -> None:
        self._maker = maker
        self._racer = racer
        self._ctx = racer._ctx
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._memory_bytes = memory_bytes
        self._closed = False
        self._closing: asyncio.Future[None] | None = None
        # Every script is posted with mini-racer's "uncancellable" callback
        # id, whose results land, one per task and in posting order (a
        # cancelled task yields a termination result too), in a thread-safe
        # queue. Whoever takes a result from the queue pairs it with the
        # oldest outstanding script while holding _consuming.
        # mini-racer only put()s and get()s on this queue; the C SimpleQueue
        # makes a timed get several times cheaper than queue.Queue's.
        self._results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        object.__setattr__(self._ctx, "_non_cancelable_mr_task_results_queue", self._results)
        self._outstanding: collections.deque[Script] = collections.deque()
        self._consuming = threading.Lock()
        self._drainer: threading.Thread | None = None
        self._posted_seq = 0
        self._paired_seq = 0  # the last script whose result was taken
        self._drain_seq = 0   # the background thread takes results up to this script

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

    def post(self, code: str) -> Script:
        """Hand ``code`` to the isolate's thread to run after whatever was
        posted before it. Collect the result with :meth:`collect`."""
        if self._closed:
            raise EngineClosed("isolate is closed")
        ctx = self._ctx
        self._posted_seq += 1
        script = Script(self._loop.create_future(), ctx._python_to_value_handle(code), self._posted_seq)
        # Outstanding before posting: a drainer may take the result at once.
        self._outstanding.append(script)
        script.task_id = ctx._dll.mr_eval(ctx._ctx, script.code_handle.raw, 0)
        return script

    # -- results ------------------------------------------------------------------

    def _take(self, timeout: float) -> bool:
        """With _consuming held: pair the next result (waiting up to
        ``timeout``) with its script. False if none came."""
        try:
            value_handle = self._results.get(timeout=timeout)
        except queue.Empty:
            return False
        if not self._outstanding:
            return True  # not one of ours (nothing else posts here); dropped
        script = self._outstanding.popleft()
        self._paired_seq = script.seq
        if threading.get_ident() == self._loop_thread:
            self._settle(script, value_handle)
        else:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                self._loop.call_soon_threadsafe(self._settle, script, value_handle)
        return True

    def _settle(self, script: Script, value_handle: Any) -> None:
        script.code_handle = None
        if script.future.done():
            return  # stopped already; the result (a termination) is dropped
        try:
            script.future.set_result(self._ctx._value_handle_to_python(value_handle))
        except Exception as exc:  # noqa: BLE001 - reported by result_of
            script.future.set_exception(exc)

    def _wait_briefly(self, script: Script, limit_s: float) -> None:
        """Block the loop for at most ``limit_s`` for ``script``'s result:
        most scripts take microseconds, and taking the result directly saves
        the loop wake-up a thread hand-off costs."""
        if self._drainer is not None or not self._consuming.acquire(blocking=False):
            return
        try:
            deadline = time.perf_counter() + limit_s
            while not script.future.done() and not self._closed:
                remaining = deadline - time.perf_counter()
                if remaining <= 0 or not self._take(remaining):
                    return
        finally:
            self._consuming.release()

    def _drain_in_background(self, script: Script) -> None:
        """Have a thread take results until ``script``'s has been taken
        (results come in posting order), delivering them to the loop."""
        self._drain_seq = max(self._drain_seq, script.seq)
        if self._drainer is None:
            self._drainer = threading.Thread(target=self._drain, name="hostrt-js-results", daemon=True)
            self._drainer.start()

    def _drain(self) -> None:
        try:
            while not self._closed and self._paired_seq < self._drain_seq:
                with self._consuming:
                    self._take(DRAIN_POLL_S)
        finally:
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                self._loop.call_soon_threadsafe(self._drainer_done)

    def _drainer_done(self) -> None:
        self._drainer = None
        if self._paired_seq < self._drain_seq and not self._closed:
            self._drainer = threading.Thread(target=self._drain, name="hostrt-js-results", daemon=True)
            self._drainer.start()  # work arrived as it was leaving

    async def collect(self, script: Script, timeout_s: float, *, block_s: float = FAST_WAIT_S) -> str:
        """Wait for a posted script's string result, terminating it if it
        runs longer than ``timeout_s`` from now or makes the process grow
        past the memory backstop. The loop blocks for at most ``block_s``
        before the wait moves to a thread.

        Raises :class:`EngineTimeout`, :class:`EngineOutOfMemory`,
        :class:`EngineScriptError`, :class:`EngineProtocolError` or
        :class:`EngineClosed`.
        """
        if not script.future.done():
            self._wait_briefly(script, min(block_s, timeout_s))
        if not script.future.done():
            watchdog = _Watchdog(self, script, timeout_s)
            self._drain_in_background(script)
            try:
                await script.future
            except asyncio.CancelledError:
                if not script.future.done():
                    raise  # the caller was cancelled; the watchdog still guards the script
            except Exception:  # noqa: BLE001 - reported by result_of below
                pass
            watchdog.stop()
        return self.result_of(script.future)

    def watch(self, script: Script, timeout_s: float) -> None:
        """Arm ``script``'s deadline (and memory backstop) without waiting
        for it; read its result later with :meth:`result_of`."""
        watchdog = _Watchdog(self, script, timeout_s)
        script.future.add_done_callback(lambda _f: watchdog.stop())
        self._drain_in_background(script)

    def result_of(self, future: "asyncio.Future[Any]") -> str:
        """The string result of a finished script's future, or the
        EngineError it ended with (as :meth:`collect` reports them)."""
        try:
            result = future.result()
        except _Stopped as stop:
            raise stop.error from None
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
        # Checked on every result: when microtasks run out of heap after a
        # script, mini-racer stops them and the next script still returns.
        if self.out_of_memory():
            raise EngineOutOfMemory("heap limit reached")
        if type(result) is not str:
            del result  # never inspected: mini-racer frees the handle with the wrapper
            raise EngineProtocolError("script returned something other than a string")
        return result

    async def eval(self, code: str, timeout_s: float) -> str:
        """Post ``code`` and collect its result (see :meth:`collect`)."""
        return await self.collect(self.post(code), timeout_s)

    def stop(self, script: Script, error: EngineError) -> None:
        """Terminate ``script`` (if it runs) and fail its collection with
        ``error``. Its result still arrives later (a termination) and is
        dropped."""
        if not script.future.done():
            script.future.set_exception(_Stopped(error))
            script.future.exception()  # marked retrieved: nobody may be waiting
        if self._maker is not None and script.task_id is not None:
            # Terminates the script if it is running, drops it if it waits.
            self._ctx._dll.mr_cancel_task(self._ctx._ctx, script.task_id)

    async def close(self, *, idle: bool = False) -> None:
        """Terminate whatever runs in the isolate and free it. Idempotent:
        every caller waits for the same freeing to finish.

        Freeing joins the isolate's thread (mini-racer stops JavaScript
        first, including code running outside any task). With ``idle`` --
        the owner knows nothing can be running -- and no script outstanding,
        that takes well under a millisecond and happens right here;
        otherwise on a thread of its own, so the loop stays responsive even
        if V8 takes a moment to stop (or never does).
        """
        if self._closing is None:
            if idle and not self._outstanding and self._maker is not None:
                self._closed = True
                self._closing = self._loop.create_future()
                try:
                    self._free()
                finally:
                    self._closing.set_result(None)
                return
            self._closing = asyncio.ensure_future(self._close())
        await asyncio.shield(self._closing)

    async def _close(self) -> None:
        self._closed = True
        for script in list(self._outstanding):
            self.stop(script, EngineClosed("isolate was closed"))
        # A thread of its own per isolate: V8 cannot stop some builtins
        # (a C++ loop over 2**53 array indices), and freeing waits for the
        # isolate's thread. Such an isolate is abandoned, with its thread,
        # instead of holding up the host or every other plugin's close.
        loop = asyncio.get_running_loop()
        done = loop.create_future()

        def free() -> None:
            self._free()
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is waiting
                loop.call_soon_threadsafe(lambda: done.done() or done.set_result(None))

        threading.Thread(target=free, name="hostrt-js-free", daemon=True).start()
        try:
            await asyncio.wait_for(asyncio.shield(done), FREE_TIMEOUT_S)
        except asyncio.TimeoutError:
            _log.error("a V8 isolate did not stop within %.0f s of being closed (stuck in a builtin V8 "
                       "cannot interrupt); it is abandoned with its thread", FREE_TIMEOUT_S)

    def _free(self) -> None:
        maker, self._maker, self._racer = self._maker, None, None
        if maker is not None:
            try:
                maker.__exit__(None, None, None)
            except Exception:  # noqa: BLE001 - close never raises
                _log.exception("freeing a V8 isolate failed")


class _Stopped(Exception):
    """Carries the reason a script was stopped to its collector."""

    def __init__(self, error: EngineError) -> None:
        super().__init__(str(error))
        self.error = error


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


class _Watchdog:
    """One timer per collected script: stops it at its deadline, and is the
    host-side backstop for memory V8's heap limit does not see.

    While a script runs longer than :data:`RSS_CHECK_INTERVAL_S`, the
    process's resident memory is sampled; if it grew by more than twice the
    plugin's memory limit (heap plus ArrayBuffer allowance) plus
    :data:`RSS_SLACK_BYTES` since the first sample, the script is stopped.
    The shim already refuses ArrayBuffer allocations past the limit; this
    catches whatever gets around it, at the price of being coarse: the
    host's own allocations during the script count too.
    """

    __slots__ = ("_isolate", "_script", "_deadline", "_timeout_s", "_start_rss", "_allowed", "_handle")

    def __init__(self, isolate: Isolate, script: Script, timeout_s: float) -> None:
        self._isolate = isolate
        self._script = script
        loop = isolate._loop
        self._timeout_s = timeout_s
        self._deadline = loop.time() + timeout_s
        self._start_rss: int | None = None
        self._allowed = 2 * isolate._memory_bytes + HEAP_OVERHEAD_BYTES + RSS_SLACK_BYTES
        self._handle: asyncio.TimerHandle | None = loop.call_at(
            min(self._deadline, loop.time() + RSS_CHECK_INTERVAL_S), self._check)

    def _check(self) -> None:
        self._handle = None
        if self._script.future.done():
            return
        loop = self._isolate._loop
        now = loop.time()
        if now >= self._deadline:
            self._isolate.stop(self._script, EngineTimeout(f"script ran longer than {self._timeout_s:.3f} s"))
            return
        rss = resident_bytes()
        if rss is not None:
            if self._start_rss is None:
                self._start_rss = rss
            elif rss - self._start_rss > self._allowed:
                grown = (rss - self._start_rss) // (1024 * 1024)
                self._isolate.stop(self._script, EngineOutOfMemory(
                    f"the process grew by {grown} MiB while the plugin ran "
                    f"(allowed {self._allowed // (1024 * 1024)} MiB)"))
                return
        self._handle = loop.call_at(min(self._deadline, now + RSS_CHECK_INTERVAL_S), self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


__all__ = [
    "Script",
    "EngineClosed",
    "EngineError",
    "EngineOutOfMemory",
    "EngineProtocolError",
    "EngineScriptError",
    "EngineTimeout",
    "Isolate",
]
