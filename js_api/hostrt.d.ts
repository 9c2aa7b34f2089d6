/**
 * TypeScript declarations for hostrt JavaScript plugins (API version 1).
 *
 * A plugin's `plugin.js` runs in a V8 isolate of its own. It is a CommonJS
 * module whose exports are a {@link PluginModule}; everything it may do goes
 * through the activation context {@link Context} that the host passes to
 * `activate` and `deactivate`.
 *
 * Use these types from JavaScript with JSDoc:
 *
 * ```js
 * /** @param {import("hostrt").Context} ctx *\/
 * exports.activate = async function activate(ctx) { ... };
 * ```
 *
 * or from TypeScript with `import type { Context } from "hostrt";`. There is
 * no `hostrt` module at run time: import types only (a `tsconfig.json`
 * `paths` entry maps `"hostrt"` to this file). The globals the isolate
 * provides (`console`, timers, {@link HostrtError}, {@link CapabilityError},
 * `module`, `exports`, `require`) are declared below as well. Compile with
 * `"lib": ["ES2025"]` (or the narrower list in hostrt's own `tsconfig.json`)
 * and no DOM or Node types: the isolate has neither.
 *
 * See docs/javascript-plugins.md for the author guide.
 */

// ---------------------------------------------------------------------------
// JSON values: the only thing that crosses between a plugin and the host
// ---------------------------------------------------------------------------

/** A JSON scalar. Numbers must be finite: `NaN` and `Infinity` are refused. */
export type JSONPrimitive = null | boolean | number | string;

/** A JSON array. */
export type JSONArray = JSONValue[];

/**
 * A plain JSON object: created by an object literal, `JSON.parse` or
 * `Object.create(null)`, never a class instance, a `Map` or a `Date`.
 *
 * In TypeScript, describe stored shapes with `type` aliases rather than
 * `interface`s: an interface is not assignable to an index signature, so it
 * is not accepted where a `JSONObject` is expected.
 */
export type JSONObject = { [key: string]: JSONValue };

/**
 * Any value that may cross into the host: `null`, a boolean, a finite
 * number, a string, an array of JSON values or a plain object of JSON
 * values.
 *
 * Anything else (`undefined`, functions, symbols, `BigInt`, `NaN`,
 * `Infinity`, `Date`, `Map`, class instances, cyclic structures, structures
 * nested too deeply or too large) makes the call throw a `TypeError` or
 * `RangeError` synchronously, before anything reaches the host; the message
 * names the JSON path of the offending value (`$.items[3].when`). Values
 * coming back from the host are always fresh copies you may change freely.
 */
export type JSONValue = JSONPrimitive | JSONArray | JSONObject;

/**
 * `T` with a literal type widened to its primitive (`0` to `number`,
 * `false` to `boolean`), so that `ctx.storage.get("runs", 0)` is a
 * `Promise<number>` rather than a `Promise<0>`.
 */
export type Widen<T> = T extends string ? string : T extends number ? number : T extends boolean ? boolean : T;

// ---------------------------------------------------------------------------
// The activation context
// ---------------------------------------------------------------------------

/** Who the plugin is, as the host knows it from `plugin.json`. */
export interface PluginInfo {
    /** The plugin id from `plugin.json` (also the name of its folder). */
    readonly id: string;
    /** The plugin's semantic version from `plugin.json`. */
    readonly version: string;
}

/**
 * The plugin's log. Output goes to the host's logger for this plugin
 * (`hostrt.plugins.<id>`).
 *
 * Logging needs no grant and is fire-and-forget: the methods return nothing
 * and never wait for the host. Unprintable characters in messages are
 * escaped and very long messages are cut by the host.
 */
export interface Log {
    /**
     * Log at debug level.
     * @param message The message text.
     * @param fields Structured data attached to the record (a JSON object,
     *   at most 8 KiB as compact JSON).
     */
    debug(message: string, fields?: JSONObject | null): void;
    /**
     * Log at info level (`console.log` and `console.info` log here too).
     * @param message The message text.
     * @param fields Structured data attached to the record (a JSON object,
     *   at most 8 KiB as compact JSON).
     */
    info(message: string, fields?: JSONObject | null): void;
    /**
     * Log at warning level.
     * @param message The message text.
     * @param fields Structured data attached to the record (a JSON object,
     *   at most 8 KiB as compact JSON).
     */
    warn(message: string, fields?: JSONObject | null): void;
    /**
     * Log at error level.
     * @param message The message text.
     * @param fields Structured data attached to the record (a JSON object,
     *   at most 8 KiB as compact JSON).
     */
    error(message: string, fields?: JSONObject | null): void;
}

/**
 * The plugin's own key/value storage, kept by the host and shared by no
 * other plugin. It survives restarts and new versions of the plugin.
 *
 * Every method needs the `storage` grant; without it the Promise rejects
 * with a {@link CapabilityError}. Keys are 1 to 100 characters of ASCII
 * letters, digits, `_`, `.` and `-` (a bad key rejects with a
 * {@link HostrtError} of code `"E_STORAGE"`). Values are {@link JSONValue}s;
 * the total size of a plugin's values is limited by the host's quota.
 *
 * The type parameter `T` of {@link Storage.get} is a promise you make to the
 * type checker, not a check: the host returns whatever JSON value is stored.
 */
export interface Storage {
    /**
     * Read a value.
     * @param key The storage key.
     * @returns The stored value, or `null` when the key is missing.
     */
    get<T extends JSONValue = JSONValue>(key: string): Promise<T | null>;
    /**
     * Read a value, or a default when the key is missing.
     * @param key The storage key.
     * @param defaultValue Returned (as a copy) when the key is missing; it
     *   is not stored. Give its type when it cannot be inferred:
     *   `ctx.storage.get("history", /** @type {string[]} *\/ ([]))`.
     * @returns The stored value, or `defaultValue`.
     * @throws {TypeError | RangeError} Synchronously, if `defaultValue` is
     *   not a JSON value.
     */
    get<T extends JSONValue>(key: string, defaultValue: T): Promise<Widen<T>>;
    /**
     * Store a value, replacing any previous one.
     * @param key The storage key.
     * @param value Any JSON value (`null` included; use {@link Storage.delete}
     *   to remove a key).
     * @returns Resolves once the value is stored. Rejects with a
     *   {@link HostrtError} of code `"E_QUOTA"` if the plugin's storage
     *   quota would be exceeded.
     * @throws {TypeError | RangeError} Synchronously, if `value` is not a
     *   JSON value; the message names its JSON path.
     */
    set(key: string, value: JSONValue): Promise<void>;
    /**
     * Remove a key.
     * @param key The storage key.
     * @returns `true` if the key existed.
     */
    delete(key: string): Promise<boolean>;
    /**
     * List keys, sorted.
     * @param prefix Only keys starting with this text (all keys when
     *   omitted or empty).
     * @returns At most 10,000 keys (the host's listing limit).
     */
    keys(prefix?: string): Promise<string[]>;
}

/**
 * The plugin's settings, as declared by the `settings` JSON Schema in its
 * `plugin.json`. The host (or its user) may change them too; values not set
 * anywhere take the schema's defaults.
 *
 * Reading needs the `settings.read` grant, writing `settings.write`; without
 * the grant the Promise rejects with a {@link CapabilityError}. Naming a
 * setting the schema does not declare, or writing a value the schema
 * refuses, rejects with a {@link HostrtError} of code `"E_SETTINGS"`.
 *
 * The type parameters of {@link Settings.get} and {@link Settings.all} are
 * not checked at run time; the settings schema is what guarantees the
 * shape, so keep the two in agreement.
 */
export interface Settings {
    /**
     * Read one setting.
     * @param key A setting declared in the manifest's settings schema.
     * @returns Its value, its schema default when it was never set, or
     *   `null` when it has neither.
     */
    get<T extends JSONValue = JSONValue>(key: string): Promise<T>;
    /**
     * Read all settings, defaults included.
     * @returns A fresh object mapping setting names to values.
     */
    all<T extends JSONObject = JSONObject>(): Promise<T>;
    /**
     * Change one setting. The whole settings document, with the new value,
     * is validated against the manifest's settings schema before anything is
     * stored. Needs the `settings.write` grant.
     * @param key A setting declared in the manifest's settings schema.
     * @param value The new value.
     * @throws {TypeError | RangeError} Synchronously, if `value` is not a
     *   JSON value.
     */
    set(key: string, value: JSONValue): Promise<void>;
}

/**
 * Something that holds a resource until it is disposed of. Push it onto
 * {@link Context.subscriptions} and the host disposes of it when the plugin
 * is deactivated.
 */
export interface Disposable {
    /**
     * Release the resource. May return a Promise; the host waits for it
     * (under the plugin's time limit) before disposing of the next one.
     */
    dispose(): void | Promise<void>;
}

/**
 * What {@link Events.on} and {@link Commands.register} return: a
 * {@link Disposable} that undoes the registration, usable at once (push it
 * onto {@link Context.subscriptions}).
 *
 * The host checks a registration when it receives it. If it refuses (no
 * grant, a command the manifest does not declare...), the handler is
 * dropped and {@link Registration.registered} rejects; a refusal nobody
 * awaited is written to the plugin's log.
 */
export interface Registration extends Disposable {
    /**
     * Stop the handler: it is not called again (an event already on its way
     * to it is not delivered). Idempotent.
     * @returns Resolves once the host has dropped the registration; never
     *   rejects.
     */
    dispose(): Promise<void>;
    /**
     * Resolves once the host has accepted the registration; rejects with
     * the host's error (a {@link CapabilityError}, or a {@link HostrtError})
     * if it refused it.
     */
    readonly registered: Promise<void>;
}

/** Which event a handler is called for. A fresh object for every call. */
export interface EventInfo {
    /** The event's name, such as `"greeting.sent"`. */
    readonly name: string;
    /** Who emitted it: the id of the plugin that declares it, or `"host"`. */
    readonly source: string;
}

/**
 * A function called with each event that matches its pattern: a fresh
 * copy of the payload, and the event's name and source. It may be `async`:
 * the plugin's next handler for the same event starts once its Promise
 * settles. What it returns is otherwise ignored; an error it throws is
 * reported to the host and does not stop the plugin's other handlers.
 *
 * `T` is a promise you make to the type checker, not a check: the payload
 * is checked against the schema its declarer gave, and nothing else.
 */
export type EventHandler<T extends JSONValue = JSONValue> = (payload: T, info: EventInfo) => unknown;

/**
 * Declared events: emit the ones the plugin's manifest declares, and
 * receive those others (or the host) emit.
 *
 * Emitting needs `events.publish:<name>`, subscribing
 * `events.subscribe:<pattern>` covering the pattern; the subscribe grant is
 * read again for every event delivered. A plugin receives events one at a
 * time, in the order they were emitted, each under the plugin's time limit.
 */
export interface Events {
    /**
     * Call `handler` for every event whose name matches `pattern`.
     * @param pattern An event name, or a pattern in which `*` matches any
     *   run of characters (`"greeting.*"`, `"*"`).
     * @param handler Called with each event's payload and {@link EventInfo};
     *   may be `async`.
     * @returns A {@link Registration}: dispose of it to stop receiving.
     * @throws {TypeError} Synchronously, if `pattern` is not a string or
     *   `handler` not a function.
     */
    on<T extends JSONValue = JSONValue>(pattern: string, handler: EventHandler<T>): Registration;
    /**
     * Emit an event the plugin's manifest declares.
     * @param name The event's name.
     * @param payload The payload, checked against the event's declared
     *   schema and size limit (default `null`).
     * @returns Resolves once the host has accepted the event (checked and
     *   queued, not yet handled). Rejects with a {@link CapabilityError}
     *   without `events.publish:<name>`, or a {@link HostrtError} of code
     *   `"E_EVENT"` (not declared by this plugin), `"E_PAYLOAD"` (the
     *   payload fails its schema or size; the message names the JSON path),
     *   `"E_EVENT_DEPTH"` (events emitted by handlers nest too deep) or
     *   `"E_RATE_LIMIT"` (the plugin emits too fast).
     * @throws {TypeError | RangeError} Synchronously, if `payload` is not a
     *   JSON value.
     */
    emit(name: string, payload?: JSONValue): Promise<void>;
}

/**
 * Methods the host application exposes to plugins. Calling one needs
 * `host.call:<name>`.
 */
export interface HostApi {
    /**
     * Call a host method.
     * @param method The method's name.
     * @param params Its parameters (default `{}`), checked against the
     *   method's schema. A paged method takes `limit` and `offset` and
     *   answers `{ items, limit, offset, total, nextOffset }`; the host
     *   caps `limit`.
     * @returns The method's result (a fresh copy). `T` is not checked. Rejects
     *   with a {@link CapabilityError} without the grant, or a
     *   {@link HostrtError} of code `"E_NO_METHOD"` (no such method),
     *   `"E_PAYLOAD"` (parameters or result refused) or `"E_HOST_METHOD"`
     *   (the method failed), or a code of the method's own.
     * @throws {TypeError | RangeError} Synchronously, if `params` is not a
     *   JSON value.
     */
    call<T extends JSONValue = JSONValue>(method: string, params?: JSONValue): Promise<T>;
}

/**
 * A function that answers a command: called with a fresh copy of the
 * parameters (already checked against the command's `paramsSchema`), it
 * returns the result (or a Promise of it), checked against `resultSchema`.
 * Returning nothing answers `null`.
 */
export type CommandHandler<P extends JSONValue = JSONValue, R extends JSONValue = JSONValue> =
    (params: P) => R | void | Promise<R | void>;

/** Commands the host invokes by name, as the plugin's manifest declares them. */
export interface Commands {
    /**
     * Answer a command declared in the manifest's `commands`. One handler
     * per command at a time: dispose of the registration before
     * registering another.
     * @param name The command's name.
     * @param handler Called with the parameters; runs under the plugin's
     *   time limit, may be `async`.
     * @returns A {@link Registration}.
     * @throws {TypeError} Synchronously, if `name` is not a string or
     *   `handler` not a function.
     */
    register<P extends JSONValue = JSONValue, R extends JSONValue = JSONValue>(
        name: string, handler: CommandHandler<P, R>): Registration;
}

/**
 * The activation context: the plugin's only way to reach the host. The same
 * names as in Python plugins; calls that cross into the host return
 * Promises, except logging, which returns nothing, and registering a
 * handler, which returns a {@link Registration} at once.
 *
 * Every call is checked against the plugin's stored grants when it is made,
 * so a grant revoked while the plugin is active bites on the next call.
 * After the plugin is deactivated, calls reject with a {@link HostrtError}
 * of code `"E_STATE"`.
 */
export interface Context {
    /** The plugin's id and version. */
    readonly plugin: PluginInfo;
    /** Logging; needs no grant. */
    readonly log: Log;
    /** Key/value storage; needs the `storage` grant. */
    readonly storage: Storage;
    /** Settings; needs `settings.read` and, to change them, `settings.write`. */
    readonly settings: Settings;
    /** Declared events; needs `events.publish:<name>` and `events.subscribe:<pattern>`. */
    readonly events: Events;
    /** Methods the host exposes; needs `host.call:<name>`. */
    readonly host: HostApi;
    /** Commands the host can invoke; the manifest declares them. */
    readonly commands: Commands;
    /**
     * Disposables that the host disposes of after `deactivate` has run,
     * newest first. Every one is disposed even if an earlier one throws.
     */
    readonly subscriptions: Disposable[];
    /**
     * The state the plugin's previous version returned from `deactivate`
     * when the host reloaded the plugin: a JSON value of this activation's
     * own (the same object on every read), or `undefined` when there is
     * none, as on a normal activation. It is kept in memory only; use
     * {@link Storage} for what must survive a restart. Check its shape
     * before use: an older version may have returned something else.
     */
    readonly previousState?: unknown;
}

/**
 * What `plugin.js` exports (`module.exports = { activate, deactivate }`, or
 * `exports.activate = ...`).
 */
export interface PluginModule {
    /**
     * Called once when the host activates the plugin. May be `async`: the
     * plugin is active once the returned Promise resolves. A throw or a
     * rejection marks the plugin `failed`.
     * @param ctx The activation context.
     */
    activate(ctx: Context): void | Promise<void>;
    /**
     * Called once when the host deactivates the plugin, before
     * `ctx.subscriptions` are disposed of. May be `async`.
     *
     * It may return state for the plugin's next version (a JSON value of
     * at most 1 MiB as compact JSON, or a Promise of one), which the host
     * hands over as {@link Context.previousState} when it reloads the
     * plugin. The state is handed over only if `deactivate` and every
     * disposer succeed; a value that is not JSON or too large fails the
     * deactivation (the plugin is still deactivated).
     * @param ctx The same context `activate` received.
     * @returns Nothing, or the state for the next version.
     */
    deactivate?(ctx: Context): void | JSONValue | Promise<void | JSONValue>;
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/**
 * The `code` of a {@link HostrtError} that a `ctx` call rejects with.
 *
 * - `"E_CAPABILITY"`: the plugin has no grant for the call ({@link CapabilityError});
 * - `"E_STORAGE"`: a bad storage key or prefix;
 * - `"E_QUOTA"`: the plugin's storage quota would be exceeded;
 * - `"E_SETTINGS"`: an undeclared setting, or a value its schema refuses;
 * - `"E_STATE"`: the plugin is no longer active (its context is closed);
 * - `"E_LIMIT"`: a host limit was reached;
 * - `"E_EVENT"`: an event the plugin does not declare;
 * - `"E_PAYLOAD"`: an event payload, host method parameters or result that
 *   fail their schema or size limit;
 * - `"E_EVENT_DEPTH"`: events emitted by event handlers nest too deep;
 * - `"E_RATE_LIMIT"`: the plugin emits events too fast;
 * - `"E_NO_METHOD"`: the host has no such method;
 * - `"E_HOST_METHOD"`: a host method failed (host methods may also use
 *   codes of their own);
 * - `"E_HOSTRT"`: any other refusal, with a message saying why (a command
 *   the manifest does not declare or that already has a handler, too many
 *   subscriptions, an invalid pattern), or a failure inside the host, as
 *   the bare message `"internal host error"`.
 */
export type HostrtErrorCode =
    | "E_CAPABILITY"
    | "E_STORAGE"
    | "E_QUOTA"
    | "E_SETTINGS"
    | "E_STATE"
    | "E_LIMIT"
    | "E_EVENT"
    | "E_PAYLOAD"
    | "E_EVENT_DEPTH"
    | "E_RATE_LIMIT"
    | "E_NO_METHOD"
    | "E_HOST_METHOD"
    | "E_HOSTRT";

/**
 * The `console` object of the isolate. Each method writes one record to the
 * plugin's log: strings as they are, plain objects and arrays as JSON,
 * errors as their stack, anything else through `String(...)`.
 */
export interface Console {
    /** Log the arguments, joined by spaces, at info level. */
    log(...data: unknown[]): void;
    /** Log the arguments, joined by spaces, at info level. */
    info(...data: unknown[]): void;
    /** Log the arguments, joined by spaces, at debug level. */
    debug(...data: unknown[]): void;
    /** Log the arguments, joined by spaces, at warning level. */
    warn(...data: unknown[]): void;
    /** Log the arguments, joined by spaces, at error level. */
    error(...data: unknown[]): void;
    /** Log the arguments, joined by spaces, at debug level (no stack is added). */
    trace(...data: unknown[]): void;
}

/** The CommonJS `module` object of `plugin.js`. */
export interface Module {
    /** What the plugin exports: a {@link PluginModule} once `plugin.js` has run. */
    exports: Partial<PluginModule> & { [name: string]: unknown };
}

// ---------------------------------------------------------------------------
// Globals of the isolate
// ---------------------------------------------------------------------------

declare global {
    /**
     * The base class of the errors a `ctx` call rejects with. Check
     * `error.code` (or `instanceof`) to tell them apart; the message names
     * the plugin and what was refused, never host details.
     *
     * ```js
     * try {
     *     await ctx.storage.set("big", value);
     * } catch (error) {
     *     if (error instanceof HostrtError && error.code === "E_QUOTA") { ... }
     *     else throw error;
     * }
     * ```
     */
    class HostrtError extends Error {
        /**
         * Plugins may throw their own, too.
         * @param message The error message.
         * @param code The error code (default `"E_HOSTRT"`).
         */
        constructor(message?: string, code?: HostrtErrorCode | (string & {}));
        /**
         * A stable error code: one of {@link HostrtErrorCode} when the host
         * rejected a call.
         */
        readonly code: HostrtErrorCode | (string & {});
    }

    /**
     * A call the plugin has no grant for: its manifest does not request the
     * capability, or the host or user has not granted it (or revoked it).
     * The message names the plugin and the capability.
     */
    class CapabilityError extends HostrtError {
        /** @param message The error message. */
        constructor(message?: string);
        /** Always `"E_CAPABILITY"`. */
        readonly code: "E_CAPABILITY";
    }

    /** Plugin logging: `log` and `info` at info level, the others at theirs. */
    var console: Console;

    /**
     * Call `callback` once, after at least `delay` milliseconds. The host
     * drives the timer; the callback runs under the plugin's time limit,
     * like every other entry into plugin code, and an error it throws is
     * written to the plugin's log. Pending timers are cleared when the
     * plugin is deactivated. At most 1,000 timers may be pending at once.
     * @param callback The function to call (may be `async`).
     * @param delay Milliseconds to wait (default 0).
     * @param args Passed to `callback`.
     * @returns A handle for {@link clearTimeout}.
     */
    function setTimeout<TArgs extends unknown[]>(
        callback: (...args: TArgs) => unknown,
        delay?: number,
        ...args: TArgs
    ): number;

    /**
     * Cancel a timer set with {@link setTimeout}. Unknown handles are ignored.
     * @param handle What `setTimeout` returned.
     */
    function clearTimeout(handle: number | undefined): void;

    /**
     * Call `callback` every `delay` milliseconds until the interval is
     * cleared or the plugin is deactivated. Each call runs under the
     * plugin's time limit.
     * @param callback The function to call (may be `async`).
     * @param delay Milliseconds between calls.
     * @param args Passed to `callback`.
     * @returns A handle for {@link clearInterval}.
     */
    function setInterval<TArgs extends unknown[]>(
        callback: (...args: TArgs) => unknown,
        delay?: number,
        ...args: TArgs
    ): number;

    /**
     * Stop an interval started with {@link setInterval}. Unknown handles are
     * ignored.
     * @param handle What `setInterval` returned.
     */
    function clearInterval(handle: number | undefined): void;

    /**
     * Run `callback` as a microtask, after the current code and before any
     * timer.
     */
    function queueMicrotask(callback: () => void): void;

    /** The CommonJS module object of `plugin.js`. */
    var module: Module;

    /** Shorthand for `module.exports` at the start of `plugin.js`. */
    var exports: Module["exports"];

    /**
     * Always throws: the isolate has no module loader, no file system and
     * no built-in modules. Bundle dependencies into `plugin.js` (for example
     * with esbuild) instead.
     */
    function require(id: string): never;
}
