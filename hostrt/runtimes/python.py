"""The Python runtime: plugin.py under RestrictedPython plus hostrt's sandbox.

Each loaded plugin gets its own single worker thread. Every entry into
plugin code -- the module top level, ``activate``, ``deactivate``, disposers,
event handlers and commands, all through :meth:`LoadedPythonPlugin.call` or
the same internal path -- runs in that thread, so plugin code never runs on
the event loop's thread. The loop waits up to :data:`BLOCKING_WAIT_S` for an
entry to finish (most take microseconds, and a thread result that is
awaited costs two loop wake-ups more) and awaits longer ones.

Time is bounded in three layers:

1. *Inside the plugin* (see :mod:`.pysandbox.budget`): compiled-in ticks
   read the clock every few hundred loop iterations or calls and raise an
   interrupt once the entry's ``timeout_ms`` is spent; the interrupt is
   sticky, so plugin handlers cannot swallow it.
2. *Host-side authority*: when an entry returns (normally or not), the
   runtime checks the budget itself. An entry that ran past its deadline
   fails with :class:`~hostrt.errors.BudgetExceededError` even if plugin
   code somehow returned normally.
3. *Last line of defence*: the awaiting side waits at most
   ``timeout + grace``. A thread stuck in one C call that never returns to
   a check (a huge sort, a comparison or hash walking a structure with
   shared parts) cannot be stopped from Python: the entry fails with
   BudgetExceededError anyway, the plugin is *poisoned* (every later call
   fails at once) and its thread is abandoned. The thread keeps its CPU until the call returns,
   and because ``concurrent.futures`` joins worker threads at interpreter
   exit, such a thread can delay process exit; documented in
   docs/python-plugins.md. Such a call also holds the GIL, so the event
   loop itself only gets to give up once the call returns: what can be
   bounded before it starts is refused up front instead (sizes in
   :mod:`.pysandbox.limits`, regular expressions in :mod:`.pysandbox.regex`).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import gc
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable

from .. import jsonvalue
from ..commands import result_subject
from ..errors import (
    BudgetExceededError,
    HostrtError,
    LifecycleError,
    PayloadError,
    PluginCompileError,
    PluginError,
)
from .base import (
    MAX_STATE_BYTES,
    LoadedPlugin,
    PluginSource,
    Runtime,
    combined_error,
    load_or_close,
    reworded,
    state_refused,
)
from .pysandbox import (
    HandlerTable,
    PluginCompileFailure,
    Reporter,
    Sandbox,
    build_context,
    compile_plugin,
    release_subscriptions,
    subscriptions_of,
)
from .pysandbox.limits import COMPILE_TIMEOUT_S, MAX_SOURCE_CHARS, PLUGIN_THREAD_STACK_BYTES

_log = logging.getLogger("hostrt.runtime.python")
_stack_size_lock = threading.Lock()


def _worker(plugin_id: str) -> ThreadPoolExecutor:
    """A one-thread executor whose thread has a large C stack (see
    :data:`PLUGIN_THREAD_STACK_BYTES`). ``threading.stack_size`` is process
    wide, so it is changed only while this thread is being started."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"hostrt-py-{plugin_id}")
    with _stack_size_lock:
        previous = threading.stack_size()
        try:
            threading.stack_size(PLUGIN_THREAD_STACK_BYTES)
        except (ValueError, RuntimeError):  # platform refuses: keep the default
            _log.warning("cannot enlarge plugin thread stacks; deep C recursion may crash the host")
        try:
            executor.submit(threading.get_ident).result()  # starts the one worker now
        finally:
            threading.stack_size(previous)
    return executor

#: Default extra time the awaiting side allows past an entry's budget before
#: it gives up on the thread (layer 3 above).
DEFAULT_GRACE_S = 2.0
#: What a result too large to return stands for (see _call_for_json).
_TOO_LARGE = object()
#: How long the event loop may block waiting for an entry before it awaits
#: the thread instead (as the JavaScript runtime does for a script).
BLOCKING_WAIT_S = 0.0005
#: Time granted to plugin ``__str__`` code while an error is being formatted.
_FORMAT_GRACE_S = 0.05


def _result_text(value: Any, path: str, max_bytes: int | None) -> Any:
    """Worker thread, inside an entry: the compact JSON text of a value
    plugin code returned (an export's or command's result, the state from
    ``deactivate``), or :data:`_TOO_LARGE` if it is larger than
    ``max_bytes``, refused before its text is built. Raises
    JSONValueError, naming the path, for a value that is not JSON."""
    try:
        return jsonvalue.encode(value, path=path, max_bytes=max_bytes)
    except jsonvalue.JSONTooLargeError:
        return _TOO_LARGE


class PythonRuntime(Runtime):
    """Loads ``plugin.py`` files. One instance serves a host; it holds no
    state shared between plugins."""

    name = "python"

    def __init__(self, *, grace_s: float = DEFAULT_GRACE_S) -> None:
        self.grace_s = grace_s

    def check(self, source: PluginSource) -> None:
        """Compile the plugin with the sandbox policy without running any of
        its code; raise PluginCompileError (file, line, column) if refused."""
        compile_source(source)

    async def load(self, source: PluginSource) -> "LoadedPythonPlugin":
        """Read, compile and run the plugin's top level under its budget.

        Raises PluginCompileError (with line/column) for source the sandbox
        refuses and a PluginError subclass if the top level fails or does
        not define ``activate``; in both cases nothing is left running.
        """
        plugin = LoadedPythonPlugin(source, grace_s=self.grace_s)
        return await load_or_close(plugin, plugin._load())


def compile_source(source: PluginSource) -> tuple[Any, Reporter]:
    """Read ``source.main`` and compile it with the sandbox policy, naming
    the code after ``source.display_file``. Returns the code object and the
    plugin's error reporter."""
    text = source.read_text()
    if len(text) > MAX_SOURCE_CHARS:
        raise PluginCompileError(
            source.plugin_id,
            f"{source.display_file} has {len(text)} characters; Python plugins are limited to {MAX_SOURCE_CHARS}",
            file=source.display_file,
        )
    host_paths = [str(source.root), str(source.root.parent), str(source.main)]
    reporter = Reporter(source.plugin_id, source.display_file, text, host_paths)
    try:
        return compile_plugin(text, source.display_file), reporter
    except PluginCompileFailure as exc:
        problem = exc.problems[0]
        message = problem.message
        if len(exc.problems) > 1:
            message += f" (and {len(exc.problems) - 1} more problem(s))"
        raise reporter.problem(PluginCompileError, message, problem.line, problem.column) from None


class LoadedPythonPlugin(LoadedPlugin):
    """A compiled, loaded Python plugin with its own worker thread."""

    def __init__(self, source: PluginSource, *, grace_s: float = DEFAULT_GRACE_S) -> None:
        self.source = source
        self._timeout_ms = max(1, int(source.limits.timeout_ms))
        self._timeout_s = self._timeout_ms / 1000
        self._grace_s = grace_s
        self._executor = _worker(source.plugin_id)
        self._sandbox = Sandbox(source.plugin_id)
        self._reporter: Reporter | None = None
        self._lock: asyncio.Lock | None = None
        self._poisoned = False
        self._closed = False
        self._activate_fn: Callable[..., Any] | None = None
        self._deactivate_fn: Callable[..., Any] | None = None
        self._ctx: Any = None
        self._gate: Any = None
        self._handlers = HandlerTable()
        self._on_crash: Callable[[PluginError], None] | None = None

    # -- public API ------------------------------------------------------------

    @property
    def poisoned(self) -> bool:
        """True once an entry failed to return within timeout + grace."""
        return self._poisoned

    async def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` -- any plugin callable -- as one budgeted entry
        in the plugin's thread and return its result.

        Raises a PluginError subclass if plugin code fails or breaks a
        limit. The result is whatever plugin code returned: if it is not
        plain data, convert it inside an entry (for example by calling a
        host function through ``call``), because touching a plugin object
        outside an entry runs plugin code outside its budget, which the
        sandbox refuses.
        """
        return await self._enter(lambda: fn(*args))

    async def call_export(self, name: str, *args: Any) -> Any:
        """Call the plugin's module-level function ``name`` with JSON
        arguments (fresh copies) as one budgeted entry and return its result
        as fresh JSON data (converted inside the entry, so no plugin object
        leaves it)."""
        if type(name) is not str:
            raise HostrtError("export name must be a string")
        try:
            copies = jsonvalue.copy(list(args), path="$args")
        except jsonvalue.JSONValueError as exc:
            raise HostrtError(f"arguments for {name}() refused: {exc}") from None
        fn = self._sandbox.globals.get(name)
        if fn is None or not callable(fn) or name.startswith("_"):
            raise PluginError(self.source.plugin_id, f"{self.source.display_file} does not define a function "
                              f"{name}()", file=self.source.display_file)
        return await self._call_for_json(f"{name}()", lambda: fn(*copies))

    async def _call_for_json(self, what: str, call: Callable[[], Any], max_bytes: int | None = None) -> Any:
        """Run ``call()`` as one entry and return its result as fresh JSON
        data (converted inside the entry, so no plugin object leaves it).
        Returns :data:`_TOO_LARGE` for a result of more than ``max_bytes``
        of JSON, refused before its text is built."""
        def body() -> Any:
            result = call()
            try:
                return _result_text(result, "$result", max_bytes)
            except jsonvalue.JSONValueError as exc:
                raise TypeError(f"{what} returned a value that is not JSON: {exc}") from None

        text = await self._entry_after_activation(body)
        return _TOO_LARGE if text is _TOO_LARGE else jsonvalue.decode(text)

    async def _entry_after_activation(self, body: Callable[[], Any]) -> Any:
        """An entry the host starts in an active plugin: as in every
        runtime, a plugin that runs past its limit there is stopped and the
        host told (:meth:`on_crash`)."""
        try:
            return await self._enter(body)
        except BudgetExceededError as exc:
            self._crash(exc)
            raise

    async def deliver_event(self, handler_ids: list[int], payload_json: str, info: dict[str, Any]) -> list[PluginError]:
        """Call the handlers in order, each with a fresh copy of the payload
        (and ``info`` if it takes two arguments), as one entry. A handler
        that raises is reported and the next one still runs."""
        errors: list[PluginError] = []
        doing = f"handler of event '{info.get('name')}'"

        def body() -> None:
            for handler_id in handler_ids:
                entry = self._handlers.get(handler_id)
                if entry is None:
                    continue  # disposed since the event was queued
                fn, with_info = entry
                payload = json.loads(payload_json)
                args = (payload, dict(info)) if with_info else (payload,)
                self._collect(errors, doing, fn, *args)

        await self._entry_after_activation(body)
        return [reworded(error, f"{doing}: {error.reason}") for error in errors]

    async def run_command(self, handler_id: int, name: str, params_json: str, max_result_bytes: int) -> Any:
        """Call the command's handler with a fresh copy of the parameters
        as one entry; return its result as fresh JSON data. A result larger
        than ``max_result_bytes`` is refused (PayloadError) while it is
        measured, before its text exists."""
        entry = self._handlers.get(handler_id)
        if entry is None:
            raise PluginError(self.source.plugin_id, f"command '{name}' has no handler any more")
        fn = entry[0]
        try:
            result = await self._call_for_json(f"command '{name}'", lambda: fn(json.loads(params_json)),
                                               max_result_bytes)
        except PluginError as exc:
            raise reworded(exc, f"command '{name}' failed: {exc.reason}") from None
        if result is _TOO_LARGE:
            raise PayloadError(result_subject(self.source.plugin_id, name), self.source.plugin_id, "$",
                               f"the limit is {max_result_bytes} bytes of JSON; this value is larger than that")
        return result

    def on_crash(self, callback: Callable[[PluginError], None]) -> None:
        """``callback(error)`` runs when a call into the active plugin ran
        past its time limit; the plugin is poisoned first."""
        self._on_crash = callback

    def _crash(self, error: PluginError) -> None:
        self._poisoned = True  # every later call fails at once
        self._sandbox.budget.poison()
        callback, self._on_crash = self._on_crash, None
        if callback is not None:
            callback(error)

    async def activate(self, ctx: Any) -> None:
        """Build the ``ctx`` facade around the gate ``ctx`` and call the
        plugin's ``activate(ctx)`` under its budget."""
        if self._closed:
            raise LifecycleError(f"plugin '{self.source.plugin_id}' is closed")
        if self._ctx is not None:
            raise LifecycleError(f"plugin '{self.source.plugin_id}' is already active")
        budget = self._sandbox.budget
        facade = build_context(ctx, budget.check, budget.remaining, self._handlers)
        self._ctx, self._gate = facade, ctx
        activate = self._activate_fn
        assert activate is not None
        await self._enter(lambda: activate(facade))

    async def deactivate(self) -> Any:
        """Call ``deactivate(ctx)`` if the plugin has one, dispose everything
        in ``ctx.subscriptions`` newest first, then the gate's host-side
        registrations, all in one budgeted entry. Every disposer runs even
        if an earlier one failed; failures are logged and the first is
        raised afterwards (with a count when there were several).

        Returns what ``deactivate`` returned, as fresh JSON data (None for
        nothing), when all of that succeeded. The value is checked and
        converted to JSON text in the entry as soon as ``deactivate``
        returns, so a disposer cannot change it; one that is not JSON or is
        larger than MAX_STATE_BYTES is refused with a PluginError after the
        disposers ran."""
        if self._ctx is None:
            return None
        facade, gate = self._ctx, self._gate
        self._ctx = self._gate = None
        deactivate = self._deactivate_fn
        errors: list[PluginError] = []

        def body() -> str | None:
            state: str | None = None
            if deactivate is not None:
                returned = self._collect(errors, "deactivate", deactivate, facade)
                if returned is not None:
                    state = self._state_text(returned, errors)
            for disposable in reversed(subscriptions_of(facade)):
                self._collect(errors, "a disposer", lambda d=disposable: d.dispose())
            release_subscriptions(facade)
            self._handlers.clear()
            try:
                gate.dispose_all()
            except Exception as exc:  # host code: report, but keep going
                _log.warning("dispose_all of plugin '%s' failed: %s", self.source.plugin_id, exc)
                errors.append(PluginError(self.source.plugin_id, f"host clean-up failed: {exc}"))
            return state

        state: str | None = None
        try:
            state = await self._enter(body)
        except BudgetExceededError as exc:
            # The interrupt usually surfaced inside body already (and was
            # collected there): one timeout is one error.
            if not any(isinstance(e, BudgetExceededError) for e in errors):
                errors.append(exc)
        except PluginError as exc:
            errors.append(exc)
        if errors:
            raise combined_error(self.source.plugin_id, errors, "deactivate")
        return None if state is None else jsonvalue.decode(state)

    def _state_text(self, returned: Any, errors: list[PluginError]) -> str | None:
        """Worker thread, inside the deactivate entry: the JSON text of the
        state ``deactivate`` returned, or None with the refusal added to
        ``errors``."""
        try:
            text = _result_text(returned, "$", MAX_STATE_BYTES)
        except jsonvalue.JSONValueError as exc:
            error = state_refused(self.source, str(exc))
        else:
            if text is not _TOO_LARGE:
                return text
            error = state_refused(self.source, None)
        _log.warning("plugin '%s': %s", self.source.plugin_id, error.reason)
        errors.append(error)
        return None

    async def close(self) -> None:
        """Stop the worker thread (without waiting for a stuck one) and
        drop the plugin's objects. Idempotent; never raises."""
        if self._closed:
            return
        self._closed = True
        self._ctx = self._gate = None
        self._activate_fn = self._deactivate_fn = None
        # Poisoning closes the budget for good: any plugin code that still
        # runs (a stuck thread coming back, a finaliser) is interrupted.
        self._sandbox.budget.poison()
        if not self._poisoned:
            # Free the plugin's objects on its own thread: deep structures
            # are freed by recursing in C, which the host thread's ordinary
            # stack may not survive (see PLUGIN_THREAD_STACK_BYTES).
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(loop.run_in_executor(self._executor, self._release), self._grace_s)
            except Exception as exc:  # noqa: BLE001 - close never raises
                _log.warning("plugin '%s': releasing its objects failed: %r", self.source.plugin_id, exc)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _release(self) -> None:
        """Worker thread: drop the module namespace and collect cycles."""
        self._sandbox.globals.clear()
        gc.collect()

    # -- loading -----------------------------------------------------------------

    async def _load(self) -> None:
        source = self.source
        loop = asyncio.get_running_loop()
        compiling = loop.run_in_executor(self._executor, self._read_and_compile)
        try:
            code = await asyncio.wait_for(asyncio.shield(compiling), COMPILE_TIMEOUT_S)
        except asyncio.TimeoutError:
            self._poison()
            raise BudgetExceededError(
                source.plugin_id,
                f"compiling took longer than {COMPILE_TIMEOUT_S:g} s; the plugin has been stopped",
                file=source.display_file,
            ) from None
        await self._enter(lambda: self._sandbox.run_module(code))
        namespace = self._sandbox.globals
        activate = namespace.get("activate")
        if activate is None or not callable(activate):
            raise PluginError(
                source.plugin_id,
                f"{source.display_file} does not define a callable activate(ctx)",
                file=source.display_file,
            )
        deactivate = namespace.get("deactivate")
        if deactivate is not None and not callable(deactivate):
            raise PluginError(
                source.plugin_id,
                f"{source.display_file}: deactivate is defined but not callable",
                file=source.display_file,
            )
        self._activate_fn, self._deactivate_fn = activate, deactivate

    def _read_and_compile(self) -> Any:
        """Runs in the worker thread: reading and compiling are host work,
        but can take a while for a large file."""
        code, self._reporter = compile_source(self.source)
        return code

    # -- entries -------------------------------------------------------------------------

    async def _enter(self, body: Callable[[], Any]) -> Any:
        """Run ``body`` as one budgeted entry in the worker thread."""
        if self._closed:
            raise LifecycleError(f"plugin '{self.source.plugin_id}' is closed")
        if self._poisoned:
            raise self._stopped_error()
        if self._lock is None:
            self._lock = asyncio.Lock()
        lock = self._lock
        await lock.acquire()
        started = time.monotonic()
        try:
            # The entry sees the host's context variables (the call chain
            # of hostrt.callchain), as a JavaScript entry does.
            context = contextvars.copy_context()
            done = self._executor.submit(context.run, self._run_entry, body)
        except BaseException:
            lock.release()
            raise
        try:
            # Most entries (an event handler, a command) take microseconds:
            # waiting for them here, briefly, saves the two loop wake-ups an
            # awaited thread result costs. Longer entries are awaited.
            value, error = done.result(timeout=BLOCKING_WAIT_S)
        except concurrent.futures.TimeoutError:
            value, error = await self._await_entry(done, lock, started)
        else:
            lock.release()
        if error is not None:
            raise error
        return value

    async def _await_entry(self, done: "concurrent.futures.Future[Any]", lock: asyncio.Lock,
                           started: float) -> Any:
        future = asyncio.wrap_future(done)
        # The lock is released when the thread is done, not when this task
        # stops waiting: a cancelled or timed-out waiter must not let a second
        # entry queue up behind a thread that is still running plugin code.
        future.add_done_callback(lambda _f: lock.release())
        left = self._timeout_s + self._grace_s - (time.monotonic() - started)
        try:
            return await asyncio.wait_for(asyncio.shield(future), max(left, 0.0))
        except asyncio.TimeoutError:
            self._poison()
            raise BudgetExceededError(
                self.source.plugin_id,
                f"plugin did not return within its time budget of {self._timeout_ms} ms plus "
                f"{self._grace_s:g} s grace (stuck in a call the sandbox cannot interrupt); "
                "the plugin has been stopped",
                file=self.source.display_file,
            ) from None

    def _run_entry(self, body: Callable[[], Any]) -> tuple[Any, PluginError | None]:
        """Worker thread: open the budget, run, translate any failure while
        still inside the budget, close the budget, then judge it."""
        budget = self._sandbox.budget
        budget.start(self._timeout_s)
        try:
            try:
                value = body()
            except BaseException as exc:  # noqa: BLE001 - SystemExit & co. must not escape either
                return None, self._translate(exc)
        finally:
            exceeded = budget.stop()
        if exceeded:
            return None, self._reporter_or_default().timeout(self._timeout_ms)
        return value, None

    def _collect(self, errors: list[PluginError], what: str, fn: Callable[..., Any], *args: Any) -> Any:
        """Worker thread, inside an entry: call plugin code and return what
        it returned, translating and logging a failure (then returning
        None) instead of raising it."""
        try:
            return fn(*args)
        except BaseException as exc:  # noqa: BLE001
            error = self._translate(exc)
            _log.warning("plugin '%s': %s failed: %s", self.source.plugin_id, what, error.reason)
            errors.append(error)
            return None

    def _translate(self, exc: BaseException) -> PluginError:
        budget = self._sandbox.budget
        over = budget.overdue
        with budget.grace(0.0 if over else _FORMAT_GRACE_S):
            return self._reporter_or_default().describe(exc, over_budget=over, timeout_ms=self._timeout_ms)

    def _reporter_or_default(self) -> Reporter:
        if self._reporter is None:
            self._reporter = Reporter(self.source.plugin_id, self.source.display_file, "", [])
        return self._reporter

    def _poison(self) -> None:
        self._poisoned = True
        self._sandbox.budget.poison()
        _log.error(
            "plugin '%s' did not return within %d ms + %.1f s; it is stopped and its thread abandoned",
            self.source.plugin_id, self._timeout_ms, self._grace_s,
        )

    def _stopped_error(self) -> BudgetExceededError:
        return BudgetExceededError(
            self.source.plugin_id,
            "plugin is stopped: an earlier call did not return within its time budget",
            file=self.source.display_file,
        )


__all__ = ["DEFAULT_GRACE_S", "LoadedPythonPlugin", "PythonRuntime"]
