"""The host side of the bootstrap shim's message protocol.

One :class:`Channel` drives one isolate. Each *exchange* is a single eval,
``__hostrt_pump("<inbound JSON>")``, that delivers the host's messages and
returns everything the plugin queued since the last exchange, as one JSON
text. A host call from JavaScript therefore costs one message each way; the
channel answers every call in the next exchange.

mini-racer runs the isolate's microtasks (the continuations of ``await``)
right *after* each eval, outside any task the host can cancel. So some
script must follow every pump: the next pump when there are host calls to
answer, else a *flush* (an empty pump). The isolate runs it right after the
previous pump's microtasks, so it collects what they queued -- the next
host call of an ``await`` chain, the result of an async entry -- and its
timeout measures those microtasks too. Microtasks that never finish make it
time out; the channel then frees the isolate, which is the one thing that
terminates code running outside a task.

Most host calls are answered at once, in the exchange that collected them.
A call whose host operation is asynchronous (``ctx.host.call`` runs a host
coroutine) is started as a task of its own; its answer joins the next
exchange of the same cause, or starts one in the background. Such tasks end
with the channel: a failed or closed channel cancels them and drops their
answers.

Causes. Host calls must run in the context (:mod:`hostrt.callchain`) of the
entry whose code made them: an event emitted by a handler is one level
deeper than the event it handles, and a host method must know which
plugins wait on it. Each exchange runs in its entry's task, so the messages
a script returns are handled in that context. Several entries (an event
delivery, a command, a timer) can be under way in one isolate at once,
though, and what a script returns also holds what the microtasks of the
script *before* it queued. So the channel remembers whose pump ran last;
an exchange of another cause first collects that pump's microtasks with a
flush of its own and handles them in the pump's context. Answers always go
back through an exchange of the caller's context (the continuation of an
``await`` then runs after a pump of its own cause), and asynchronous
operations run as tasks that copy the dispatching context.

The channel never trusts what it reads: the outbound text is parsed as JSON
with size limits, each message is checked for shape, and anything else is
a protocol failure that stops this plugin only. Identity is never read from
a message: a channel belongs to one plugin's isolate.
"""

from __future__ import annotations

import asyncio
import collections
import contextvars
import inspect
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, Awaitable, Protocol

from .. import callchain
from ..errors import BudgetExceededError, HostrtError, PluginError, ResourceLimitError
from .base import MAX_STATE_BYTES
from .js_engine import (
    EngineClosed,
    EngineError,
    EngineOutOfMemory,
    EngineScriptError,
    EngineTimeout,
    FAST_WAIT_S,
    LOAD_WAIT_S,
    Isolate,
    Script,
)

_log = logging.getLogger("hostrt.runtime.js")

#: How long the host works on one batch of a plugin's host calls before it
#: sends the answers so far and lets the rest of the loop run.
WORK_SLICE_S = 0.01
#: How much later than the per-eval timeout an entry's promise must settle.
_SETTLE_MARGIN_S = 0.02


@dataclass(frozen=True)
class ChannelLimits:
    """Sizes the shim enforces first and the host enforces again."""

    #: Characters of messages one exchange may return.
    max_outbox_chars: int = 8 * 1024 * 1024
    #: Characters of JSON one value (an argument, a result) may take.
    max_value_chars: int = 2 * 1024 * 1024
    #: Nesting depth of one value.
    max_depth: int = 64
    #: Host calls awaiting an answer at once.
    max_pending_calls: int = 10000
    #: Answers to host calls sent in one exchange, by count and by size;
    #: the rest wait for the next exchange.
    max_replies_per_exchange: int = 1000
    max_reply_chars: int = 2 * 1024 * 1024
    #: Timers pending at once.
    max_timers: int = 1000
    #: Characters kept of an error's name, message or stack.
    max_error_chars: int = 16384

    def for_shim(self, memory_bytes: int) -> dict[str, int]:
        """The limits as the bootstrap's ``LIMITS`` object. ArrayBuffer
        memory (outside the V8 heap) gets the same allowance as the heap.
        The state ``deactivate`` returns is refused in the isolate past
        MAX_STATE_BYTES characters (a UTF-8 byte or more each); the host
        counts its bytes."""
        return {
            "maxExternalBytes": memory_bytes,
            "maxHeapBytes": memory_bytes,
            "maxOutboxChars": self.max_outbox_chars,
            "maxValueChars": self.max_value_chars,
            "maxStateChars": MAX_STATE_BYTES,
            "maxDepth": self.max_depth,
            "maxPendingCalls": self.max_pending_calls,
            "maxTimers": self.max_timers,
            "maxErrorChars": self.max_error_chars,
        }


class ChannelHost(Protocol):
    """What the channel needs from the runtime that owns it."""

    def dispatch(self, op: str, args: list[Any]) -> Any:
        """Run host call ``op`` (raising HostrtError to refuse it) and
        return its result, or an awaitable of the result for an operation
        that completes later (its HostrtError refuses the call the same
        way)."""

    def log(self, level: str, message: str, fields: Any) -> None:
        """Write a plugin log line."""

    def uncaught(self, where: str, info: Any) -> None:
        """Report an error no entry was waiting for (a timer callback)."""

    def failed(self, error: PluginError) -> None:
        """The plugin broke a limit or the protocol; the channel is dead."""


class RawJSON:
    """A host call's result that is already JSON text (stored by the host,
    so trusted), sent on as it is."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class ProtocolError(Exception):
    """The isolate sent something the shim never sends."""


@dataclass
class _Entry:
    future: "asyncio.Future[Any]"
    target: str
    timer: asyncio.TimerHandle | None = None


class Channel:
    """Drives one plugin isolate; see the module docstring."""

    def __init__(
        self,
        isolate: Isolate,
        host: ChannelHost,
        *,
        plugin_id: str,
        display_file: str,
        timeout_s: float,
        limits: ChannelLimits,
    ) -> None:
        self._isolate = isolate
        self._host = host
        self._plugin_id = plugin_id
        self._file = display_file
        self._timeout_s = timeout_s
        self._limits = limits
        self._lock = asyncio.Lock()
        self._entries: dict[int, _Entry] = {}
        self._timers: dict[int, asyncio.TimerHandle] = {}
        self._next_entry = 1
        self._failure: PluginError | None = None
        self._closed = False
        self._tasks: set[asyncio.Task[None]] = set()
        self._flush_owed = False
        self._due: list[tuple[callchain.Cause, contextvars.Context, int]] = []
        # Messages not yet acted on, each with the cause (and context) of
        # the exchange that collected it.
        self._backlog: collections.deque[tuple[callchain.Cause, contextvars.Context, Any]] = collections.deque()
        # Host calls whose operation is still running; answers waiting for
        # an exchange of their cause to carry them; causes with a sender
        # scheduled.
        self._ops: dict[int, asyncio.Task[None]] = {}
        self._ready: dict[callchain.Cause, collections.deque[str]] = {}
        self._senders: set[callchain.Cause] = set()
        # The cause and context of the last pump, while its microtasks'
        # output may still wait in the isolate (no flush collected it yet).
        self._uncollected: tuple[callchain.Cause, contextvars.Context] | None = None

    @property
    def failure(self) -> PluginError | None:
        return self._failure

    # -- evaluation ---------------------------------------------------------------

    async def run_scripts(self, scripts: list[tuple[str, float]]) -> None:
        """Evaluate scripts that each end by returning the shim's outbox (the
        bootstrap, the plugin's source), posted together (one hand-off),
        then a flush for what their microtasks queued; handle it all.

        Raises EngineScriptError, with ``index`` set to the script's
        position, if V8 refuses a script or it throws; other failures fail
        the channel.
        """
        async with self._lock:
            self._raise_if_dead()
            posted = [(self._isolate.post(code), timeout_s) for code, timeout_s in scripts]
            flush = self._isolate.post(FLUSH)
            texts = []
            for index, (script, timeout_s) in enumerate(posted):
                try:
                    texts.append(await self._collect(script, timeout_s, block_s=LOAD_WAIT_S))
                except EngineScriptError as exc:
                    exc.index = index
                    for later, _ in posted[index + 1:]:
                        self._isolate.stop(later, EngineClosed("an earlier script failed"))
                    self._isolate.stop(flush, EngineClosed("an earlier script failed"))
                    raise
            texts.append(await self._collect(flush, self._timeout_s))
            self._uncollected = None
        replies: list[str] = []
        for text in texts:
            replies += self._handle(text)
        if replies:
            self._background(self.exchange(replies, block_s=0.0))

    async def exchange(self, inbound: list[str], *, until: "asyncio.Future[Any] | None" = None,
                       block_s: float = FAST_WAIT_S) -> None:
        """Deliver ``inbound`` and keep exchanging while host calls are
        being answered, until nothing the plugin queued is left uncollected.

        A pump whose result holds host calls is answered by the next pump,
        which the isolate runs only after the first pump's microtasks, so
        it collects what they queued as well. Only when there is nothing to
        answer is a flush (an empty pump) needed to collect the microtasks'
        output. If ``until`` is done by then (a synchronous entry returned),
        that flush is owed instead (see :meth:`_owe_flush`): the caller has
        its answer one hand-off sooner.
        """
        yielded = time.perf_counter()
        cause = callchain.current()
        mine = (cause, contextvars.copy_context())
        while True:
            async with self._lock:
                self._raise_if_dead()
                self._flush_owed = False
                try:
                    if self._uncollected is not None and self._uncollected[0] != cause:
                        await self._adopt(block_s)
                    text = await self._collect(self._isolate.post(pump_code(inbound)), self._timeout_s,
                                               block_s=block_s)
                    self._uncollected = mine
                    replies = self._handle(text)
                    if not replies and not self._backlog:
                        if until is not None and until.done():
                            self._owe_flush()
                            return
                        text = await self._collect(self._isolate.post(FLUSH), self._timeout_s, block_s=block_s)
                        self._uncollected = None
                        replies = self._handle(text)
                except EngineScriptError as exc:
                    raise self._broken_shim(exc) from None
            if not replies:
                return
            inbound = replies
            now = time.perf_counter()
            if self._backlog or now - yielded > WORK_SLICE_S:
                # A plugin with a lot to ask does not hold the loop: the
                # rest of the host runs between its batches.
                await asyncio.sleep(0)
                yielded = time.perf_counter()

    async def _adopt(self, block_s: float) -> None:
        """The last pump was another cause's: collect what its microtasks
        queued (a flush) before this exchange's pump does, and act on it in
        that pump's context; its answers go back through an exchange of
        that context."""
        last = self._uncollected
        assert last is not None
        self._uncollected = None
        text = await self._collect(self._isolate.post(FLUSH), self._timeout_s, block_s=block_s)
        context = last[1]
        replies = context.run(self._handle, text)
        if replies:
            self._background(self.exchange(replies, block_s=0.0), context=context)

    def _owe_flush(self) -> None:
        """Make sure some script runs after the last pump's microtasks: the
        next exchange if one comes first, else a flush posted from the loop
        (collected in the background, under its timeout, so a spin there
        fails the plugin)."""
        self._flush_owed = True
        asyncio.get_running_loop().call_soon(self._pay_flush)

    def _pay_flush(self) -> None:
        if not self._flush_owed or self._failure is not None or self._closed or self._lock.locked():
            return  # a later exchange collects (and times) those microtasks
        self._flush_owed = False
        self._uncollected = None  # this flush collects them, and is handled in this context
        flush = self._isolate.post(FLUSH)
        self._isolate.watch(flush, self._timeout_s)
        flush.future.add_done_callback(self._flushed)

    def _flushed(self, future: "asyncio.Future[Any]") -> None:
        if future.cancelled() or self._failure is not None or self._closed:
            if not future.cancelled():
                future.exception()
            return
        try:
            text = self._isolate.result_of(future)
        except EngineError as exc:
            self._fail_for(exc)
            return
        try:
            replies = self._handle(text)
        except PluginError:
            return  # failed the channel already
        if replies:
            self._background(self.exchange(replies, block_s=0.0))

    def _background(self, work: Any, *, context: contextvars.Context | None = None) -> None:
        task = asyncio.get_running_loop().create_task(self._quietly(work), context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _quietly(work: Any) -> None:
        try:
            await work
        except (PluginError, EngineError):
            pass  # recorded by fail()

    async def _collect(self, script: Script, timeout_s: float, *, block_s: float = FAST_WAIT_S) -> str:
        try:
            return await self._isolate.collect(script, timeout_s, block_s=block_s)
        except EngineScriptError:
            raise
        except EngineError as exc:
            raise self._fail_for(exc) from None

    def _fail_for(self, exc: EngineError) -> PluginError:
        """Fail the channel for an engine error other than a script error."""
        if isinstance(exc, EngineTimeout):
            return self.fail(BudgetExceededError(
                self._plugin_id,
                f"plugin code ran longer than its time limit of {self._timeout_s * 1000:.0f} ms "
                "and was stopped",
                file=self._file,
            ))
        if isinstance(exc, EngineOutOfMemory):
            return self.fail(ResourceLimitError(
                self._plugin_id, f"plugin used more memory than its limit and was stopped ({exc})",
                file=self._file,
            ))
        if isinstance(exc, EngineScriptError):
            return self._broken_shim(exc)
        if isinstance(exc, EngineClosed):
            if self._failure is not None:
                return self._failure
            if self._closed:
                return PluginError(self._plugin_id, "the plugin is closed", file=self._file)
            return self.fail(PluginError(self._plugin_id, "the plugin's isolate is closed", file=self._file))
        return self._broken_protocol(exc)

    def _broken_protocol(self, exc: Exception) -> PluginError:
        return self.fail(PluginError(self._plugin_id, f"the isolate broke the host protocol: {exc}",
                                     file=self._file))

    def _broken_shim(self, exc: EngineScriptError) -> PluginError:
        # The pump catches everything; a throw means the plugin broke the
        # shim, which breaks only the plugin.
        return self.fail(PluginError(self._plugin_id, "the plugin broke its bootstrap: "
                                     + exc.text.split("\n", 1)[0], file=self._file))

    def _raise_if_dead(self) -> None:
        if self._failure is not None:
            raise self._failure
        if self._closed:
            raise PluginError(self._plugin_id, "the plugin is closed", file=self._file)

    # -- entries --------------------------------------------------------------------

    async def enter(self, target: str, args_json: str = "null", *, settle_timeout_s: float | None = None,
                    drain: bool = True) -> Any:
        """Run the shim's entry ``target`` with ``args_json`` (JSON text) and
        return its result.

        With ``settle_timeout_s`` the plugin must finish (its promise settle)
        within that time or the plugin fails; without it the entry returns
        as soon as it was delivered (a timer callback). With ``drain`` the
        microtasks the entry left behind have run (or failed the plugin)
        when this returns; without it a synchronous result returns at once
        and those microtasks are checked in the background, failing the
        plugin (not this call) if they run too long.
        """
        self._raise_if_dead()
        loop = asyncio.get_running_loop()
        entry_id = self._next_entry
        self._next_entry += 1
        entry = _Entry(loop.create_future(), target)
        self._entries[entry_id] = entry
        if settle_timeout_s is not None:
            # A little later than the eval timeout, so code that runs too
            # long is reported as such rather than as "did not finish".
            entry.timer = loop.call_later(settle_timeout_s + _SETTLE_MARGIN_S, self._settle_timeout, entry_id)
        try:
            enter = '["enter",' + str(entry_id) + "," + json.dumps(target) + "," + args_json + "]"
            await self.exchange([enter], until=None if drain else entry.future)
            if settle_timeout_s is None:
                return None
            return await entry.future
        finally:
            if entry.timer is not None:
                entry.timer.cancel()
            self._entries.pop(entry_id, None)
            if entry.future.done() and not entry.future.cancelled():
                entry.future.exception()  # retrieved: the caller got it another way

    def _settle_timeout(self, entry_id: int) -> None:
        entry = self._entries.get(entry_id)
        if entry is None or entry.future.done():
            return
        self.fail(BudgetExceededError(
            self._plugin_id,
            f"{entry.target} did not finish within the time limit of {self._timeout_s * 1000:.0f} ms "
            "(a promise that never settled, or work that kept going); the plugin was stopped",
            file=self._file,
        ))

    # -- outbound messages ---------------------------------------------------------------

    def _handle(self, text: str) -> list[str]:
        """Take in one outbox, collected for the current cause, and act on
        it, in order, until the batch of answers is full (see
        :meth:`_work`); returns the answers."""
        try:
            messages = self._parse(text)
        except ProtocolError as exc:
            raise self._broken_protocol(exc)
        cause = callchain.current()
        context = contextvars.copy_context()
        self._backlog.extend((cause, context, m) for m in messages)
        return self._work()

    def _work(self) -> list[str]:
        """Take the answers of the current cause's finished asynchronous
        calls, then act on backlogged messages in order. Stops once the
        answers reach :attr:`ChannelLimits.max_reply_chars` or
        :attr:`ChannelLimits.max_replies_per_exchange`, or answering took
        :data:`WORK_SLICE_S`: the rest waits for the next exchange (the loop
        runs in between), so neither the host's memory nor one turn of its
        loop grows with what a plugin asks for at once.

        A message another cause's exchange collected and left for later is
        acted on in its own context, and its answer goes back through an
        exchange of that context (see :meth:`_later`)."""
        replies: list[str] = []
        size = 0
        backlog = self._backlog
        limits = self._limits
        cause = callchain.current()
        ready = self._ready.get(cause)
        while ready:
            reply = ready.popleft()
            replies.append(reply)
            size += len(reply)
            if size >= limits.max_reply_chars or len(replies) >= limits.max_replies_per_exchange:
                break
        if ready is not None and not ready:
            del self._ready[cause]
        if replies and (size >= limits.max_reply_chars or len(replies) >= limits.max_replies_per_exchange):
            return replies
        deadline = time.perf_counter() + WORK_SLICE_S
        while backlog:
            owner, context, item = backlog.popleft()
            try:
                if owner == cause:
                    reply = self._one(item)
                else:
                    reply = context.run(self._one, item)
                    if reply is not None:
                        context.run(self._later, reply)
                        continue
            except ProtocolError as exc:
                raise self._broken_protocol(exc)
            if reply is not None:
                replies.append(reply)
                size += len(reply)
                if (size >= limits.max_reply_chars or len(replies) >= limits.max_replies_per_exchange
                        or time.perf_counter() > deadline):
                    break
        return replies

    def _parse(self, text: str) -> list[Any]:
        if len(text) > self._limits.max_outbox_chars + 4096:
            raise ProtocolError(f"{len(text)} characters in one exchange")
        try:
            messages = json.loads(text)
        except (ValueError, RecursionError) as exc:
            raise ProtocolError(f"outbox is not JSON ({type(exc).__name__})") from None
        if type(messages) is not list:
            raise ProtocolError("outbox is not a list")
        return messages

    def _one(self, item: Any) -> str | None:
        if type(item) is not list or not item or type(item[0]) is not str:
            raise ProtocolError("malformed message")
        kind, args = item[0], item[1:]
        if kind == "call" and len(args) == 3 and _is_id(args[0]) and type(args[1]) is str and type(args[2]) is list:
            return self._call(args[0], args[1], args[2])
        elif kind == "log" and len(args) == 3 and type(args[0]) is str and type(args[1]) is str:
            try:
                self._host.log(args[0], args[1], args[2])
            except HostrtError as exc:
                _log.warning("plugin '%s' wrote a log record the host refused: %s", self._plugin_id, exc.message)
        elif kind == "done" and len(args) == 3 and _is_id(args[0]) and type(args[1]) is bool:
            self._done(args[0], args[1], args[2])
        elif kind == "timer" and len(args) == 2 and _is_id(args[0]) and type(args[1]) in (int, float):
            self._add_timer(args[0], float(args[1]))
        elif kind == "untimer" and len(args) == 1 and _is_id(args[0]):
            handle = self._timers.pop(args[0], None)
            if handle is not None:
                handle.cancel()
        elif kind == "error" and len(args) == 2 and type(args[0]) is str:
            self._host.uncaught(args[0], args[1])
        else:
            raise ProtocolError(f"unknown message {kind!r}")
        return None

    def _call(self, call_id: int, op: str, args: list[Any]) -> str | None:
        if call_id in self._ops:
            raise ProtocolError(f"call {call_id} is already running")
        try:
            value = self._host.dispatch(op, args)
        except HostrtError as exc:
            return _refusal(call_id, exc)
        except Exception:  # a host bug: the plugin learns nothing about it
            return self._internal_error(call_id, op)
        if inspect.isawaitable(value):
            return self._start(call_id, op, value)
        return _answer(call_id, value)

    def _internal_error(self, call_id: int, op: str) -> str:
        _log.exception("host error during %s from plugin '%s'", op, self._plugin_id)
        return message("reply", call_id, False, {"code": "E_HOSTRT", "message": "internal host error"})

    # -- asynchronous host calls ---------------------------------------------------------

    def _start(self, call_id: int, op: str, work: Awaitable[Any]) -> str | None:
        """Run an asynchronous host operation as a task; its answer is sent
        when it completes (see :meth:`_finish`). The task copies the current
        context: that of the exchange, so of the entry, that dispatched it."""
        if len(self._ops) >= self._limits.max_pending_calls:
            _discard(work)
            return message("reply", call_id, False, {
                "code": "E_LIMIT", "message": f"more than {self._limits.max_pending_calls} host calls are pending"})
        if self._failure is not None or self._closed:
            _discard(work)
            return None
        self._ops[call_id] = asyncio.get_running_loop().create_task(self._finish(call_id, op, work))
        return None

    async def _finish(self, call_id: int, op: str, work: Awaitable[Any]) -> None:
        try:
            try:
                reply = _answer(call_id, await work)
            except HostrtError as exc:
                reply = _refusal(call_id, exc)
            except Exception:  # a host bug, as in _call; cancellation passes through
                reply = self._internal_error(call_id, op)
        finally:
            self._ops.pop(call_id, None)
        if self._failure is not None or self._closed:
            return
        self._later(reply)

    def _later(self, reply: str) -> None:
        """Send an answer through an exchange of the current cause: the
        next one that acts on messages (see :meth:`_work`), or one started
        in the background, in this context, for answers that finished in
        the same turn of the loop."""
        cause = callchain.current()
        self._ready.setdefault(cause, collections.deque()).append(reply)
        if cause not in self._senders:
            self._senders.add(cause)
            self._background(self._send_ready(cause))

    async def _send_ready(self, cause: callchain.Cause) -> None:
        try:
            await asyncio.sleep(0)  # answers finishing in the same turn travel together
        finally:
            self._senders.discard(cause)
        if cause not in self._ready or self._failure is not None or self._closed:
            return  # an exchange of this cause took them
        replies = self._work()
        if replies:
            await self.exchange(replies, block_s=0.0)

    def _stop_ops(self) -> None:
        for task in self._ops.values():
            task.cancel()
        self._ops.clear()
        self._ready.clear()

    def _done(self, entry_id: int, ok: bool, value: Any) -> None:
        entry = self._entries.get(entry_id)
        if entry is None or entry.future.done():
            return
        if ok:
            entry.future.set_result(value)
        else:
            entry.future.set_exception(EntryFailed(value))

    def _add_timer(self, timer_id: int, delay_ms: float) -> None:
        if self._closed or self._failure is not None:
            return
        if timer_id not in self._timers and len(self._timers) >= self._limits.max_timers:
            raise ProtocolError(f"more than {self._limits.max_timers} timers")
        old = self._timers.pop(timer_id, None)
        if old is not None:
            old.cancel()
        delay = min(max(delay_ms, 0.0), 2_147_483_647.0) / 1000
        loop = asyncio.get_running_loop()
        self._timers[timer_id] = loop.call_later(delay, self._fire, timer_id)

    def _fire(self, timer_id: int) -> None:
        if self._timers.pop(timer_id, None) is None or self._closed or self._failure is not None:
            return
        # Timers due together are delivered together, in one exchange per
        # cause that never blocks the loop waiting (a plugin with a thousand
        # zero-delay intervals costs one exchange per turn of the loop, not
        # a thousand). A timer runs in the cause of the code that set it
        # (this callback runs in the context captured then), so one set
        # while handling an event stays at that event's depth.
        self._due.append((callchain.current(), contextvars.copy_context(), timer_id))
        if len(self._due) == 1:
            self._background(self._run_due())

    async def _run_due(self) -> None:
        await asyncio.sleep(0)  # let every timer due in this turn join
        due, self._due = self._due, []
        if not due or self._failure is not None or self._closed:
            return
        groups: dict[callchain.Cause, tuple[contextvars.Context, list[str]]] = {}
        for cause, context, timer_id in due:
            groups.setdefault(cause, (context, []))[1].append(message("enter", 0, "timer", [timer_id]))
        for context, entries in groups.values():
            self._background(self.exchange(entries, block_s=0.0), context=context)

    # -- failure and shutdown -----------------------------------------------------------

    def fail(self, error: PluginError) -> PluginError:
        """Stop the plugin for good: reject every waiting entry, drop every
        timer, free the isolate and tell the runtime. Returns ``error`` (the
        first failure wins)."""
        if self._failure is not None:
            return self._failure
        self._failure = error
        self._stop_timers()
        self._stop_ops()
        for entry in self._entries.values():
            if not entry.future.done():
                entry.future.set_exception(error)
        # Kept so the task is not collected before it ran; close() awaits the same work.
        self._close_task = asyncio.get_running_loop().create_task(self._isolate.close())
        try:
            self._host.failed(error)
        except Exception:  # noqa: BLE001 - reporting must not mask the failure
            _log.exception("reporting the failure of plugin '%s' failed", self._plugin_id)
        return error

    def _stop_timers(self) -> None:
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()

    async def close(self) -> None:
        """Drop timers and free the isolate. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        self._stop_timers()
        self._stop_ops()
        # Idle unless something might still run: a failure (it may be stuck)
        # or microtasks whose flush is still owed.
        await self._isolate.close(idle=self._failure is None and not self._flush_owed)


class EntryFailed(Exception):
    """An entry's plugin code threw; ``info`` is the shim's description."""

    def __init__(self, info: Any) -> None:
        super().__init__("plugin code failed")
        self.info = info


def _answer(call_id: int, value: Any) -> str:
    if type(value) is RawJSON:
        return '["reply",' + str(call_id) + ",true," + value.text + "]"
    return message("reply", call_id, True, value)


def _refusal(call_id: int, exc: HostrtError) -> str:
    return message("reply", call_id, False, {"code": exc.code, "message": exc.message})


def _discard(work: Awaitable[Any]) -> None:
    """Drop an awaitable that will never be awaited, without a warning."""
    if inspect.iscoroutine(work):
        work.close()


def _is_id(value: Any) -> bool:
    return type(value) is int and 1 <= value < 2**53


def message(*parts: Any) -> str:
    """One inbound message as compact JSON text."""
    return json.dumps(parts, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def pump_code(inbound: list[str]) -> str:
    """The script for one exchange: ``inbound`` holds messages already
    encoded as JSON texts (see :func:`message`)."""
    # The argument is a JS string literal holding JSON: json.dumps of text is
    # a valid JS string literal, and JSON.parse (unlike an object literal)
    # treats "__proto__" as an ordinary key.
    return "__hostrt_pump(" + json.dumps("[" + ",".join(inbound) + "]") + ")"



__all__ = ["Channel", "ChannelHost", "ChannelLimits", "EntryFailed", "RawJSON", "message", "pump_code"]

#: The script that delivers nothing and collects the outbox.
FLUSH = pump_code([])
