// hostrt bootstrap: evaluated once in every plugin isolate, before any plugin
// code, with the placeholders __PLUGIN_ID__, __PLUGIN_VERSION__ and
// __LIMITS__ filled in by the host.
//
// This file is a convenience layer, not a security boundary. The host checks
// every grant, validates every value and knows which plugin is calling
// without trusting anything this code sends; a plugin that rewrites what is
// built here only breaks itself. What the shim does guarantee is that the
// host never has to touch a plugin-controlled JS value: everything that
// crosses is a string this code produced from intrinsics captured before the
// plugin ran.
//
// Protocol. The host drives the isolate with one eval per exchange:
//     __hostrt_pump("<JSON array of inbound messages>")  -> "<JSON array>"
// returning every outbound message queued since the last exchange.
//   inbound:  ["enter", entryId, target, args]   run activate/deactivate/a timer,
//                                                 an exported function, event
//                                                 handlers or a command handler
//             ["reply", callId, ok, valueOrError]  settle a host call (some are
//                                                 answered in a later exchange)
//   outbound: ["call", callId, op, args]  ["log", level, message, fields]
//             ["done", entryId, ok, valueOrError]
//             ["timer", timerId, delayMs]  ["untimer", timerId]
//             ["error", where, errorInfo]   an uncaught error outside an entry
"use strict";
(function (global) {
  // -- intrinsics, captured before plugin code can replace them --------------
  const ObjectCreate = Object.create;
  const ObjectFreeze = Object.freeze;
  const ObjectKeys = Object.keys;
  const ObjectGetPrototypeOf = Object.getPrototypeOf;
  const ObjectDefineProperty = Object.defineProperty;
  const ObjectGetOwnPropertyDescriptor = Object.getOwnPropertyDescriptor;
  const ObjectPrototype = Object.prototype;
  const ArrayIsArray = Array.isArray;
  const ReflectApply = Reflect.apply;
  const JSONStringify = JSON.stringify;
  const JSONParse = JSON.parse;
  const NumberIsFinite = Number.isFinite;
  const NumberIsSafeInteger = Number.isSafeInteger;
  const StringCtor = String;
  const ErrorCtor = Error;
  const TypeErrorCtor = TypeError;
  const RangeErrorCtor = RangeError;
  const PromiseCtor = Promise;
  const promiseResolve = Promise.resolve;
  const promiseThen = Promise.prototype.then;
  const MapCtor = Map;
  const mapGet = Map.prototype.get;
  const mapSet = Map.prototype.set;
  const mapDelete = Map.prototype.delete;
  const mapHas = Map.prototype.has;
  const mapForEach = Map.prototype.forEach;
  const mapClear = Map.prototype.clear;
  const mapSizeGetter = ObjectGetOwnPropertyDescriptor(Map.prototype, "size").get;
  const stringSlice = String.prototype.slice;
  const arrayJoin = Array.prototype.join;
  const stringSplit = String.prototype.split;
  const stringIncludes = String.prototype.includes;

  const PLUGIN_ID = __PLUGIN_ID__;
  const PLUGIN_VERSION = __PLUGIN_VERSION__;
  const LIMITS = __LIMITS__;

  const mapSize = (m) => ReflectApply(mapSizeGetter, m, []);
  const slice = (s, a, b) => ReflectApply(stringSlice, s, [a, b]);
  const then = (p, ok, bad) => ReflectApply(promiseThen, p, [ok, bad]);
  const resolved = (v) => ReflectApply(promiseResolve, PromiseCtor, [v]);
  const isThenable = (v) => {
    if (v === null || (typeof v !== "object" && typeof v !== "function")) return false;
    return typeof v.then === "function";
  };

  // A wrapper reports the `length` of what it stands for (`name` comes
  // from how it is defined, a method, which is also never a constructor).
  const sameLength = (wrapper, original) =>
    ObjectDefineProperty(wrapper, "length", { value: original.length, writable: false, enumerable: false, configurable: true });
  // Replaces owner[name] with a method (of the same name) that runs
  // body(original, receiver, args); skipped where V8 lacks the method.
  const replaceMethod = (owner, name, body) => {
    const original = owner[name];
    if (typeof original !== "function") return;
    const wrapper = { [name](...args) { return body(original, this, args); } }[name];
    sameLength(wrapper, original);
    owner[name] = wrapper;
  };

  // -- memory outside the heap ----------------------------------------------------
  // ArrayBuffer backing stores (so every typed array) live outside the V8
  // heap and its hard limit. Every way to allocate one is charged against
  // LIMITS.maxExternalBytes; a private FinalizationRegistry gives the bytes
  // back when a buffer is collected.
  const Registry = FinalizationRegistry;
  const WeakSetCtor = WeakSet;
  const weakSetHas = WeakSet.prototype.has;
  const weakSetAdd = WeakSet.prototype.add;
  const registryRegister = Registry.prototype.register;
  const ReflectConstruct = Reflect.construct;
  const ProxyCtor = Proxy;
  const MathTrunc = Math.trunc;
  const MathFloor = Math.floor;
  const ArrayBufferCtor = ArrayBuffer;
  const byteLengthOf = ObjectGetOwnPropertyDescriptor(ArrayBuffer.prototype, "byteLength").get;
  const TypedArrayProto = Object.getPrototypeOf(Uint8Array.prototype);
  const typedLength = ObjectGetOwnPropertyDescriptor(TypedArrayProto, "length").get;
  const typedBuffer = ObjectGetOwnPropertyDescriptor(TypedArrayProto, "buffer").get;
  const SymbolIterator = Symbol.iterator;
  let external = 0;
  const tracked = new WeakSetCtor();
  const registry = new Registry((bytes) => { external -= bytes; });
  const overLimit = (what, bytes) => new RangeErrorCtor(
    what + ": " + bytes + " more bytes of ArrayBuffer memory would pass this plugin's limit of " +
    LIMITS.maxExternalBytes + " bytes (" + external + " in use)");
  const reserve = (bytes, what) => {
    if (bytes > 0 && external + bytes > LIMITS.maxExternalBytes) throw overLimit(what, bytes);
  };
  const track = (buffer, what) => {
    if (ReflectApply(weakSetHas, tracked, [buffer])) return;
    const bytes = ReflectApply(byteLengthOf, buffer, []);
    reserve(bytes, what);
    external += bytes;
    ReflectApply(weakSetAdd, tracked, [buffer]);
    ReflectApply(registryRegister, registry, [buffer, bytes]);
  };
  const toIndex = (v) => { const n = MathTrunc(+v); return n > 0 ? n : 0; };
  const chargedAtMax = new WeakSetCtor();
  const chargeAtMax = (buffer, max) => {
    external += max;
    ReflectApply(weakSetAdd, tracked, [buffer]);
    ReflectApply(weakSetAdd, chargedAtMax, [buffer]);
    ReflectApply(registryRegister, registry, [buffer, max]);
  };
  const resizableOf = ObjectGetOwnPropertyDescriptor(ArrayBuffer.prototype, "resizable").get;
  const maxByteLengthOf = ObjectGetOwnPropertyDescriptor(ArrayBuffer.prototype, "maxByteLength").get;
  const wrapMethod = (owner, name, before) => {
    const what = name + "()";
    replaceMethod(owner, name, (original, self, args) => {
      if (before) before(self, args, what);
      const result = ReflectApply(original, self, args);
      // Brand checks, not instanceof: a plugin can give the constructor a
      // Symbol.hasInstance that answers false.
      if (isBuffer(result)) track(result, what);
      else if (isTyped(result)) track(ReflectApply(typedBuffer, result, []), what);
      return result;
    });
  };
  const isTyped = (v) => { try { ReflectApply(typedLength, v, []); return true; } catch (_) { return false; } };
  const isBuffer = (v) => { try { ReflectApply(byteLengthOf, v, []); return true; } catch (_) { return false; } };
  // An array-like or iterable source of a new typed array, copied into a
  // plain array element by element, charging as it goes: its length is
  // read once (a getter cannot answer 0 to us and 2**31 to V8), and the
  // copy stops at the allowance instead of asking V8 for one huge block.
  const copySource = (source, bytesPerElement, what) => {
    const room = (LIMITS.maxExternalBytes - external) / bytesPerElement;
    const list = [];
    const iterate = source[SymbolIterator];
    if (iterate !== undefined && iterate !== null) {
      const it = ReflectApply(iterate, source, []);
      for (;;) {
        const step = it.next();
        if (step.done) break;
        if (list.length >= room) throw overLimit(what, (list.length + 1) * bytesPerElement);
        list[list.length] = step.value;
      }
    } else {
      const length = toIndex(source.length);
      reserve(length * bytesPerElement, what);
      for (let i = 0; i < length; i++) list[i] = source[i];
    }
    return list;
  };
  const guardConstructor = (Ctor, bytesPerElement) => {
    const what = "new " + Ctor.name + "()";
    const guarded = new ProxyCtor(Ctor, {
      construct(target, args, newTarget) {
        const first = args[0];
        if (bytesPerElement === 0) {
          const n = toIndex(first);
          reserve(n, what);
          args[0] = n;
          // A resizable buffer reserves address space for its maximum at
          // once (V8's sandbox is shared by every isolate of the process):
          // the maximum must fit in what the plugin has left.
          const options = args[1];
          if (options !== null && typeof options === "object") {
            const max = options.maxByteLength;
            if (max !== undefined) {
              const m = toIndex(max);
              reserve(m, what);
              args[1] = { maxByteLength: m };
              // Charged at its maximum: resizing within it is then free.
              const made = ReflectConstruct(target, args, newTarget === guarded ? target : newTarget);
              chargeAtMax(made, m);
              return made;
            }
          }
        } else if (first === null || typeof first !== "object") {
          const n = toIndex(first);
          reserve(n * bytesPerElement, what);
          args[0] = n;
        } else {
          // What `first` is, is decided by brand checks no plugin hook can
          // answer (not instanceof, whose Symbol.hasInstance a plugin may
          // define), and V8 is handed values it will not read a second time.
          let kind = "list";
          if (isBuffer(first)) kind = "buffer";
          else if (isTyped(first)) {
            reserve(ReflectApply(typedLength, first, []) * bytesPerElement, what);
            kind = "typed";
          }
          if (kind === "list") args = [copySource(first, bytesPerElement, what)];
        }
        const made = ReflectConstruct(target, args, newTarget === guarded ? target : newTarget);
        track(bytesPerElement === 0 ? made : ReflectApply(typedBuffer, made, []), what);
        return made;
      },
    });
    ObjectDefineProperty(Ctor.prototype, "constructor", { value: guarded, writable: true, configurable: true, enumerable: false });
    global[Ctor.name] = guarded;
    return guarded;
  };
  guardConstructor(ArrayBuffer, 0);
  for (const name of ["Int8Array", "Uint8Array", "Uint8ClampedArray", "Int16Array", "Uint16Array", "Int32Array",
                      "Uint32Array", "Float16Array", "Float32Array", "Float64Array", "BigInt64Array", "BigUint64Array"]) {
    const Ctor = global[name];
    if (typeof Ctor === "function") guardConstructor(Ctor, Ctor.BYTES_PER_ELEMENT);
  }
  const ArrayBufferProto = ArrayBufferCtor.prototype;
  // Lengths are converted once, here, and V8 gets the converted number: a
  // valueOf that answers differently the second time changes nothing.
  replaceMethod(ArrayBufferProto, "resize", (original, self, [newLength]) => {
    const n = toIndex(newLength);
    if (ReflectApply(weakSetHas, chargedAtMax, [self])) return ReflectApply(original, self, [n]);
    const before = ReflectApply(byteLengthOf, self, []);
    reserve(n - before, "resize()");
    const result = ReflectApply(original, self, [n]);
    const delta = ReflectApply(byteLengthOf, self, []) - before;
    if (delta !== 0) {
      external += delta;
      ReflectApply(registryRegister, registry, [self, delta]);
    }
    return result;
  });
  for (const name of ["transfer", "transferToFixedLength"]) {
    const what = name + "()";
    replaceMethod(ArrayBufferProto, name, (original, self, [newLength]) => {
      const n = newLength === undefined ? ReflectApply(byteLengthOf, self, []) : toIndex(newLength);
      // transfer() keeps a resizable buffer resizable, with its maximum.
      const max = name === "transfer" && ReflectApply(resizableOf, self, []) ? ReflectApply(maxByteLengthOf, self, []) : -1;
      reserve(max >= 0 ? max : n, what);
      const made = ReflectApply(original, self, [n]);
      if (max >= 0) chargeAtMax(made, max); else track(made, what);
      return made;
    });
  }
  // slice() copies at most the whole buffer: that is what is charged.
  wrapMethod(ArrayBufferProto, "slice", (buffer, args, what) => {
    reserve(ReflectApply(byteLengthOf, buffer, []), what);
  });
  const typedByteLength = ObjectGetOwnPropertyDescriptor(TypedArrayProto, "byteLength").get;
  for (const name of ["slice", "map", "filter", "toReversed", "toSorted", "with"]) {
    wrapMethod(TypedArrayProto, name, (array, args, what) => {
      // The result is at most as large as the array (measured by its brand,
      // not by a BYTES_PER_ELEMENT the plugin could redefine).
      reserve(ReflectApply(typedByteLength, array, []), what);
    });
  }
  // The decoded bytes are charged before V8 decodes (and, for a string
  // built lazily with repeat(), first flattens) the text: at most 3 bytes
  // per 4 characters of base64, 1 per 2 of hex.
  for (const [name, perChar] of [["fromBase64", 3 / 4], ["fromHex", 1 / 2]]) {
    wrapMethod(global.Uint8Array, name, (self, args, what) => {
      if (typeof args[0] === "string") reserve(MathFloor(args[0].length * perChar), what);
    });
  }

  // -- arrays built in one step ---------------------------------------------------
  // A few builtins materialise a whole array in one C++ call. Asked for 2**31
  // elements, V8 does not stop at the heap limit (checked between calls):
  // it dies with a fatal out-of-memory error and takes the host process
  // with it. Those calls are refused when the result could not fit in the
  // plugin's memory limit anyway. Lengths are read once and V8 gets arrays
  // whose length cannot change under it.
  const maxElements = MathFloor(LIMITS.maxHeapBytes / 8);
  const tooMany = (what, n) => new RangeErrorCtor(
    what + ": " + n + " elements would not fit in this plugin's memory limit (at most " + maxElements + ")");
  const toLength = (v) => { const n = MathTrunc(+v); return n > 0 ? (n < 9007199254740991 ? n : 9007199254740991) : 0; };
  const ArrayProto = Array.prototype;
  const copyOf = (source, length) => { const copy = []; for (let i = 0; i < length; i++) copy[i] = source[i]; return copy; };
  // The length V8 will walk, read once. Real arrays (and Proxies of them,
  // whose every step V8 takes through interruptible traps) and array-likes
  // with a plain length are walked as they are; an array-like whose length
  // is computed (a getter could answer differently to V8) is walked as a
  // copy, or refused by the methods that change it in place.
  const walkOf = (obj, what, mutating) => {
    let length;
    let copy = false;
    if (ArrayIsArray(obj)) length = obj.length;
    else {
      const own = ObjectGetOwnPropertyDescriptor(obj, "length");
      if (own !== undefined && "value" in own) length = toLength(own.value);
      else {
        if (mutating) throw new TypeErrorCtor(what + " on an array-like whose length is computed is not supported");
        length = toLength(obj.length);
        copy = true;
      }
    }
    if (length > maxElements) throw tooMany(what, length);
    return copy ? copyOf(obj, length) : obj;
  };
  // A plain array of what `items` iterates (or, for an array-like, of its
  // elements), built here in JavaScript, which the limits interrupt:
  // Symbol.iterator and length are each read once, so a getter cannot
  // answer one thing to a check and another to V8.
  const listOf = (items, what) => {
    const iterate = items[SymbolIterator];
    if (typeof iterate !== "function") {
      const length = toLength(items.length);
      if (length > maxElements) throw tooMany(what, length);
      return copyOf(items, length);
    }
    const it = ReflectApply(iterate, items, []);
    const list = [];
    for (;;) {
      const step = it.next();
      if (step.done) return list;
      if (list.length >= maxElements) throw tooMany(what, list.length + 1);
      list[list.length] = step.value;
    }
  };
  // Every method that walks 0..length: V8 walks in C++, where neither the
  // time limit nor the heap limit reaches, so 2**53 "elements" of an
  // array-like would hold the isolate's thread for good.
  const MUTATING = { copyWithin: 1, fill: 1, reverse: 1, shift: 1, sort: 1, splice: 1, unshift: 1 };
  const WALKING = ["copyWithin", "every", "fill", "filter", "find", "findIndex", "findLast", "findLastIndex",
                   "forEach", "includes", "indexOf", "join", "lastIndexOf", "map", "reduce", "reduceRight",
                   "reverse", "shift", "slice", "some", "sort", "splice", "toLocaleString", "toReversed",
                   "toSorted", "toSpliced", "unshift", "with"];
  for (const name of WALKING) {
    const what = "Array.prototype." + name + "()";
    const mutating = MUTATING[name] === 1;
    replaceMethod(ArrayProto, name, (original, self, args) => ReflectApply(original, walkOf(self, what, mutating), args));
  }
  const SymbolIsConcatSpreadable = Symbol.isConcatSpreadable;
  replaceMethod(ArrayProto, "concat", (original, self, items) => {
    const parts = [self, ...items];
    let total = 0;
    let plain = true;
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      if (ArrayIsArray(part)) total += part.length;
      else if (part !== null && typeof part === "object") plain = false;
      else total += 1;
      if (total > maxElements) throw tooMany("Array.prototype.concat()", total);
    }
    if (plain) return ReflectApply(original, self, items);
    // An object may be spreadable, and say so differently each time it is
    // asked: the result is built here, asking once.
    const out = [];
    for (let i = 0; i < parts.length; i++) {
      const part = parts[i];
      const spread = part !== null && typeof part === "object" &&
        (part[SymbolIsConcatSpreadable] !== undefined ? !!part[SymbolIsConcatSpreadable] : ArrayIsArray(part));
      if (!spread) { out[out.length] = part; continue; }
      const source = walkOf(part, "Array.prototype.concat()", false);
      const length = ArrayIsArray(source) ? source.length : toLength(ObjectGetOwnPropertyDescriptor(source, "length").value);
      if (out.length + length > maxElements) throw tooMany("Array.prototype.concat()", out.length + length);
      for (let k = 0; k < length; k++) if (k in source) out[out.length] = source[k]; else out.length += 1;
    }
    return out;
  });
  // flat() walks every nested array down to its depth: their lengths are
  // checked first, in JavaScript (which the limits interrupt).
  const nestedTotal = (array, depth, what) => {
    let total = array.length;
    if (total > maxElements) throw tooMany(what, total);
    if (depth < 1) return total;
    for (let i = 0; i < array.length; i++) {
      const item = array[i];
      if (ArrayIsArray(item)) {
        total += nestedTotal(item, depth - 1, what);
        if (total > maxElements) throw tooMany(what, total);
      }
    }
    return total;
  };
  for (const name of ["flat", "flatMap"]) {
    const what = "Array.prototype." + name + "()";
    replaceMethod(ArrayProto, name, (original, self, args) => {
      const target = walkOf(self, what, false);
      const depth = name === "flat" ? (args[0] === undefined ? 1 : MathTrunc(+args[0]) || 0) : 1;
      nestedTotal(ArrayIsArray(target) ? target : copyOf(target, 0), depth > 64 ? 64 : depth, what);
      return ReflectApply(original, target, args);
    });
  }
  // Splitting, matching or replacing over a string that could not fit in
  // the heap makes V8 abort the process instead of failing: such strings
  // (cheap to make with repeat(), which builds them lazily) are refused.
  const stringLength = (v) => (typeof v === "string" ? v.length : StringCtor(v).length);
  const tooLong = (what, n) => new RangeErrorCtor(what + ": a string of " + n +
    " characters is longer than this plugin's memory limit allows (" + maxElements + ")");
  const guardString = (owner, name, pick) => {
    const what = (typeof name === "symbol" ? "RegExp.prototype[" + StringCtor(name.description) + "]" : name) + "()";
    replaceMethod(owner, name, (original, self, args) => {
      const subject = pick(self, args);
      if (subject !== undefined && stringLength(subject) > maxElements) throw tooLong(what, stringLength(subject));
      return ReflectApply(original, self, args);
    });
  };
  const StringProto = String.prototype;
  for (const name of ["split", "match", "matchAll", "replace", "replaceAll"]) guardString(StringProto, name, (self) => self);
  const RegExpProto = RegExp.prototype;
  for (const symbol of [Symbol.split, Symbol.match, Symbol.matchAll, Symbol.replace]) {
    guardString(RegExpProto, symbol, (self, args) => args[0]);
  }
  // ICU copies the items of a list outside both the heap and the memory
  // backstop's reach, in C++ that cannot be interrupted.
  const ListFormat = typeof Intl === "object" && Intl !== null ? Intl.ListFormat : undefined;
  if (typeof ListFormat === "function") {
    for (const name of ["format", "formatToParts"]) {
      const what = "Intl.ListFormat." + name + "()";
      replaceMethod(ListFormat.prototype, name, (original, self, [list]) => {
        const items = listOf(list, what);
        let total = 0;
        for (let i = 0; i < items.length; i++) {
          total += stringLength(items[i]);
          if (total > maxElements) throw tooMany(what, total);
        }
        return ReflectApply(original, self, [items]);
      });
    }
  }

  // -- strings copied whole in one step --------------------------------------------
  // A string of half a billion characters costs almost nothing to build
  // (`s + s`, repeat(): V8 keeps it as a rope of the parts). The builtins
  // below flatten it and copy it again (for ICU, the URI coder, the JSON
  // serializer) in one C++ call, outside the heap limit; a string longer
  // than the heap could hold anyway is refused before they start. What
  // is not a string already is converted once, here, and V8 gets the
  // result: a toString cannot show the check one length and V8 another.
  const WeakMapCtor = WeakMap;
  const weakMapGet = WeakMap.prototype.get;
  const weakMapSet = WeakMap.prototype.set;
  const ObjectHasOwn = Object.hasOwn;
  const SymbolToPrimitive = Symbol.toPrimitive;
  const dateToPrimitive = Date.prototype[Symbol.toPrimitive];
  const stringValueOf = String.prototype.valueOf;
  const isObject = (v) => v !== null && (typeof v === "object" || typeof v === "function");
  // ToString, once (null, undefined and symbols are left to V8 and its errors).
  const fitting = (what, v) => {
    if (isObject(v) || typeof v === "bigint") v = StringCtor(v);
    if (typeof v === "string" && v.length > maxElements) throw tooLong(what, v.length);
    return v;
  };
  // ToPrimitive(v, number), once: Intl.NumberFormat reads a string result
  // as a decimal number of any length.
  const fittingNumber = (what, v) => {
    if (isObject(v)) {
      const exotic = v[SymbolToPrimitive];
      if (exotic === undefined || exotic === null) v = ReflectApply(dateToPrimitive, v, ["number"]);
      else {
        v = ReflectApply(exotic, v, ["number"]);
        if (isObject(v)) throw new TypeErrorCtor("Cannot convert object to primitive value");
      }
    }
    if (typeof v === "string" && v.length > maxElements) throw tooLong(what, v.length);
    return v;
  };
  // owner[name] checks its receiver (if `receiver`) and its first `count`
  // arguments with `convert` before V8 sees them.
  const guardWhole = (owner, prefix, name, receiver, count, convert) => {
    const what = prefix + name + "()";
    replaceMethod(owner, name, (original, self, args) => {
      if (receiver) {
        // V8's own TypeError for a missing receiver, before any conversion.
        if (self === null || self === undefined) return ReflectApply(original, self, args);
        self = convert(what, self);
      }
      for (let i = 0; i < count && i < args.length; i++) args[i] = convert(what, args[i]);
      return ReflectApply(original, self, args);
    });
  };
  for (const name of ["normalize", "toUpperCase", "toLowerCase", "toLocaleUpperCase", "toLocaleLowerCase",
                      "isWellFormed", "toWellFormed"]) {
    guardWhole(StringProto, "String.prototype.", name, true, 0, fitting);
  }
  guardWhole(StringProto, "String.prototype.", "localeCompare", true, 1, fitting);
  for (const name of ["encodeURIComponent", "encodeURI", "decodeURIComponent", "decodeURI", "escape", "unescape"]) {
    guardWhole(global, "", name, false, 1, fitting);
  }
  // Intl.Collator's compare and Intl.NumberFormat's format are getters of
  // a function bound to their object, the same one each time: so is the
  // checking function standing for it.
  const guardBound = (proto, prefix, name, count, convert) => {
    const own = ObjectGetOwnPropertyDescriptor(proto, name);
    if (own === undefined || typeof own.get !== "function") return;
    const what = prefix + name + "()";
    const getBound = own.get;
    const wrappers = new WeakMapCtor();
    const getter = ObjectGetOwnPropertyDescriptor({
      get [name]() {
        const bound = ReflectApply(getBound, this, []);
        let wrapper = ReflectApply(weakMapGet, wrappers, [bound]);
        if (wrapper === undefined) {
          wrapper = { [""](...args) {
            for (let i = 0; i < count && i < args.length; i++) args[i] = convert(what, args[i]);
            return ReflectApply(bound, undefined, args);
          } }[""];
          sameLength(wrapper, bound);
          ReflectApply(weakMapSet, wrappers, [bound, wrapper]);
        }
        return wrapper;
      },
    }, name).get;
    ObjectDefineProperty(proto, name, { get: getter, set: own.set, enumerable: own.enumerable, configurable: own.configurable });
  };
  const IntlObject = typeof Intl === "object" && Intl !== null ? Intl : {};
  if (typeof IntlObject.Segmenter === "function") {
    guardWhole(IntlObject.Segmenter.prototype, "Intl.Segmenter.prototype.", "segment", false, 1, fitting);
  }
  if (typeof IntlObject.Collator === "function") {
    guardBound(IntlObject.Collator.prototype, "Intl.Collator.prototype.", "compare", 2, fitting);
  }
  if (typeof IntlObject.NumberFormat === "function") {
    const proto = IntlObject.NumberFormat.prototype;
    guardBound(proto, "Intl.NumberFormat.prototype.", "format", 1, fittingNumber);
    guardWhole(proto, "Intl.NumberFormat.prototype.", "formatToParts", false, 1, fittingNumber);
    for (const name of ["formatRange", "formatRangeToParts"]) {
      guardWhole(proto, "Intl.NumberFormat.prototype.", name, false, 2, fittingNumber);
    }
  }
  // JSON.parse flattens its text first.
  guardWhole(JSON, "JSON.", "parse", false, 1, fitting);
  // JSON.stringify escapes every string into its result. Checking every
  // string of a large value would cost as much as the serializing, so
  // only the first JSON_LOOK values (breadth first, own data properties
  // of arrays and plain objects, read without running getters) are looked
  // at, and refused past the limit each or in all. A replacer function
  // sees every value (after toJSON): what it returns is checked too.
  const JSON_LOOK = 256;
  const tooMuchText = (what, total) => new RangeErrorCtor(what + ": strings of " + total +
    " characters in all are longer than this plugin's memory limit allows (" + maxElements + ")");
  const lookAtStrings = (value, what) => {
    const queue = [value];
    let total = 0;
    for (let head = 0; head < queue.length; head++) {
      let v = queue[head];
      if (isObject(v)) {
        const proto = ObjectGetPrototypeOf(v);
        if (proto === StringProto) {
          try { v = ReflectApply(stringValueOf, v, []); } catch (_) { continue; }
        } else {
          const array = ArrayIsArray(v);
          if (queue.length >= JSON_LOOK || (!array && proto !== ObjectPrototype && proto !== null)) continue;
          const keys = array ? null : ObjectKeys(v);
          const n = array ? v.length : keys.length;
          for (let i = 0; i < n && queue.length < JSON_LOOK; i++) {
            const own = ObjectGetOwnPropertyDescriptor(v, array ? i : keys[i]);
            if (own !== undefined && ObjectHasOwn(own, "value")) queue[queue.length] = own.value;
          }
          continue;
        }
      }
      if (typeof v === "string") {
        if (v.length > maxElements) throw tooLong(what, v.length);
        total += v.length;
        if (total > maxElements) throw tooMuchText(what, total);
      }
    }
  };
  replaceMethod(JSON, "stringify", (original, self, args) => {
    const what = "JSON.stringify()";
    lookAtStrings(args[0], what);
    const replacer = args[1];
    if (typeof replacer === "function") {
      args[1] = function (key, value) {
        const result = ReflectApply(replacer, this, [key, value]);
        if (typeof result === "string" && result.length > maxElements) throw tooLong(what, result.length);
        return result;
      };
    }
    return ReflectApply(original, self, args);
  });
  // Array.prototype.join copies every string element (and the separator
  // between them) into its result: their lengths are added up first.
  replaceMethod(ArrayProto, "join", (original, self, args) => {
    const what = "Array.prototype.join()";
    if (self === null || self === undefined) return ReflectApply(original, self, args);
    const target = walkOf(self, what, false);
    const n = ArrayIsArray(target) ? target.length : toLength(ObjectGetOwnPropertyDescriptor(target, "length").value);
    let separator = args[0];
    if (separator !== undefined && typeof separator !== "symbol") {
      args[0] = separator = StringCtor(separator);
      if (separator.length > maxElements) throw tooLong(what, separator.length);
    }
    let total = n > 1 ? (typeof separator === "string" ? separator.length : 1) * (n - 1) : 0;
    for (let i = 0; i < n; i++) {
      const item = target[i];
      if (typeof item === "string") total += item.length;
    }
    if (total > maxElements) throw tooLong(what, total);
    return ReflectApply(original, target, args);
  });

  replaceMethod(Array, "from", (original, self, [items, ...rest]) => {
    if (items !== null && items !== undefined) items = listOf(items, "Array.from()");
    return ReflectApply(original, self, [items, ...rest]);
  });

  // -- capability removal ------------------------------------------------------
  // Everything that can run code outside a host-driven exchange (and so
  // outside the host's clock) goes before plugin code can take a reference
  // to it: Atomics.waitAsync and FinalizationRegistry callbacks run as tasks
  // of their own; WebAssembly.Memory and SharedArrayBuffer allocate memory
  // nothing here accounts for.
  for (const name of ["WebAssembly", "SharedArrayBuffer", "Atomics", "FinalizationRegistry"]) {
    delete global[name];
  }
  // mini-racer's own timer manager uses Atomics.waitAsync; ours is host-driven.
  global.__timer_manager = undefined;

  // -- outbox ------------------------------------------------------------------
  // Messages are kept as JSON text, so nothing the plugin later mutates can
  // change what it already sent, and no array method it overrides is used.
  let outbox = "";
  let outboxBytes = 0;
  const send = (text) => {
    outboxBytes += text.length;
    if (outboxBytes > LIMITS.maxOutboxChars) {
      outboxBytes -= text.length;
      throw new RangeErrorCtor(
        "too much data sent to the host at once (more than " + LIMITS.maxOutboxChars +
        " characters queued); await host calls before making more");
    }
    outbox = outbox === "" ? text : outbox + "," + text;
  };
  const takeOutbox = () => {
    const text = "[" + outbox + "]";
    outbox = "";
    outboxBytes = 0;
    return text;
  };

  // -- strict JSON encoding ------------------------------------------------------
  // JSON.stringify silently turns NaN into null, drops functions and calls
  // toJSON; values for the host must be plain data, so they are walked here
  // and refused with the JSON path of the first problem.
  const describe = (v) => {
    if (v === undefined) return "undefined";
    if (typeof v === "number") return StringCtor(v);
    if (typeof v === "bigint") return "a BigInt";
    if (typeof v === "symbol") return "a Symbol";
    if (typeof v === "function") return "a function";
    return "an object that is not a plain object or array";
  };
  const pathKey = (path, key) =>
    /^[A-Za-z_$][A-Za-z0-9_$]*$/.test(key) ? path + "." + key : path + "[" + JSONStringify(key) + "]";

  // The encoder's latest refusal: the error it threw, its kind ("size" or
  // "value") and what is wrong (the message without `what`), so that a
  // caller can tell it from an error plugin code threw while its value was
  // read (a getter, a Proxy trap).
  let refusal = null;
  const refuse = (Ctor, what, kind, verb, detail) => {
    const error = new Ctor(what + verb + detail);
    refusal = { error, kind, detail };
    return error;
  };
  const notJSON = (what, detail) => refuse(TypeErrorCtor, what, "value", " is not JSON: ", detail);

  // `limit` (characters of JSON) defaults to LIMITS.maxValueChars.
  function encode(value, what, path, limit) {
    const seen = [];
    let size = 0;
    if (limit === undefined) limit = LIMITS.maxValueChars;
    const grow = (n, path) => {
      size += n;
      if (size > limit) {
        throw refuse(RangeErrorCtor, what, "size", " is too large: ",
          "more than " + limit + " characters as JSON (at " + path + ")");
      }
    };
    const walk = (v, path, depth) => {
      if (v === null) { grow(4, path); return "null"; }
      switch (typeof v) {
        case "boolean": grow(5, path); return v ? "true" : "false";
        case "string": { const s = JSONStringify(v); grow(s.length, path); return s; }
        case "number":
          if (!NumberIsFinite(v)) throw notJSON(what, describe(v) + " at " + path);
          { const s = JSONStringify(v); grow(s.length, path); return s; }
        case "object": break;
        default:
          throw notJSON(what, describe(v) + " at " + path);
      }
      if (depth >= LIMITS.maxDepth) {
        throw refuse(RangeErrorCtor, what, "value", " is ", "nested more than " + LIMITS.maxDepth + " levels deep at " + path);
      }
      for (let i = 0; i < seen.length; i++) {
        if (seen[i] === v) throw notJSON(what, "it contains a cycle at " + path);
      }
      seen[seen.length] = v;
      let text;
      if (ArrayIsArray(v)) {
        const n = v.length;
        grow(2 + (n > 0 ? n - 1 : 0), path);
        text = "[";
        for (let i = 0; i < n; i++) {
          const item = v[i];
          const p = path + "[" + i + "]";
          if (item === undefined) throw notJSON(what, "undefined at " + p);
          text += (i ? "," : "") + walk(item, p, depth + 1);
        }
        text += "]";
      } else {
        const proto = ObjectGetPrototypeOf(v);
        if (proto !== ObjectPrototype && proto !== null) throw notJSON(what, describe(v) + " at " + path);
        const keys = ObjectKeys(v);
        grow(2, path);
        text = "{";
        let first = true;
        for (let i = 0; i < keys.length; i++) {
          const key = keys[i];
          const item = v[key];
          if (item === undefined) continue;  // as JSON.stringify does
          const p = pathKey(path, key);
          const k = JSONStringify(key);
          grow(k.length + (first ? 1 : 2), p);  // the key, ":" and (after the first) ","
          text += (first ? "" : ",") + k + ":" + walk(item, p, depth + 1);
          first = false;
        }
        text += "}";
      }
      seen.length = seen.length - 1;
      return text;
    };
    return walk(value, path === undefined ? "$" : path, 0);
  }
  // A host call's arguments each get the limits of one value (the list
  // itself is not a level of any of them).
  const encodeArguments = (args) => {
    let text = "[";
    for (let i = 0; i < args.length; i++) {
      text += (i === 0 ? "" : ",") + encode(args[i], "argument", "$[" + i + "]");
    }
    return text + "]";
  };

  // -- errors --------------------------------------------------------------------
  class HostrtError extends ErrorCtor {
    constructor(message, code) {
      super(message);
      // Defined, not assigned: an accessor the plugin put on
      // Object.prototype.code must not swallow (or throw on) the code, which
      // would leave the refused call's promise unsettled.
      ObjectDefineProperty(this, "code", {
        value: code === undefined ? "E_HOSTRT" : code, writable: true, enumerable: true, configurable: true,
      });
    }
    get name() { return "HostrtError"; }
  }
  class CapabilityError extends HostrtError {
    constructor(message) { super(message, "E_CAPABILITY"); }
    get name() { return "CapabilityError"; }
  }
  const hostError = (info) => {
    const code = info && typeof info.code === "string" ? info.code : "E_HOSTRT";
    const message = info && typeof info.message === "string" ? info.message : "host error";
    return code === "E_CAPABILITY" ? new CapabilityError(message) : new HostrtError(message, code);
  };

  // Turns anything thrown into plain strings. Reading a plugin's error may
  // run plugin code (getters, toString): that happens here, inside the
  // isolate and under the host's clock, never in the host.
  const MAX_TEXT = LIMITS.maxErrorChars;
  const clip = (s) => (s.length > MAX_TEXT ? slice(s, 0, MAX_TEXT) + "... [cut]" : s);
  const safeString = (v) => {
    try {
      if (typeof v === "string") return v;
      if (typeof v === "symbol") return "Symbol(" + StringCtor(v.description) + ")";
      const s = StringCtor(v);
      return typeof s === "string" ? s : "(unprintable)";
    } catch (_) {
      return "(unprintable)";
    }
  };
  // Stack frames of this file (and the host's one-line pump call) say
  // nothing to the author; they are left out of what is reported.
  const cleanStack = (stack) => {
    const lines = ReflectApply(stringSplit, stack, ["\n"]);
    const kept = [];
    for (let i = 0; i < lines.length; i++) {
      const line = lines[i];
      if (ReflectApply(stringIncludes, line, ["hostrt/bootstrap.js:"]) || line === "    at <anonymous>:1:1") continue;
      kept[kept.length] = line;
    }
    return ReflectApply(arrayJoin, kept, ["\n"]);
  };
  function errorInfo(e) {
    const info = { name: "Error", message: "", stack: "", code: null, thrown: "error" };
    if (e === null || (typeof e !== "object" && typeof e !== "function")) {
      info.thrown = typeof e;
      info.name = "Uncaught " + (e === null ? "null" : typeof e);
      info.message = clip(safeString(e));
      return info;
    }
    try { const n = e.name; if (typeof n === "string") info.name = clip(n); } catch (_) {}
    try { const m = e.message; info.message = clip(typeof m === "string" ? m : safeString(m === undefined ? e : m)); } catch (_) { info.message = "(unreadable message)"; }
    try { const s = e.stack; if (typeof s === "string") info.stack = clip(cleanStack(s)); } catch (_) {}
    try { const c = e.code; if (typeof c === "string") info.code = clip(c); } catch (_) {}
    return info;
  }
  const errorText = (e) => {
    try { return encode(errorInfo(e), "error"); } catch (_) {
      return '{"name":"Error","message":"(unreportable error)","stack":"","code":null,"thrown":"error"}';
    }
  };

  // -- host calls ----------------------------------------------------------------
  let nextCall = 1;
  const pending = new MapCtor();
  const call = (op, args) => {
    if (closed) return PromiseCtor.reject(new HostrtError("plugin '" + PLUGIN_ID + "' is not active", "E_STATE"));
    const text = encodeArguments(args);
    if (mapSize(pending) >= LIMITS.maxPendingCalls) {
      throw new RangeErrorCtor("more than " + LIMITS.maxPendingCalls + " host calls are pending; await some first");
    }
    const id = nextCall++;
    send('["call",' + id + "," + JSONStringify(op) + "," + text + "]");
    return new PromiseCtor((resolve, reject) => {
      ReflectApply(mapSet, pending, [id, { resolve, reject }]);
    });
  };
  const settle = (id, ok, value) => {
    const p = ReflectApply(mapGet, pending, [id]);
    if (p === undefined) return;
    ReflectApply(mapDelete, pending, [id]);
    if (ok) p.resolve(value); else p.reject(hostError(value));
  };

  let closed = false;
  const LEVELS = ["debug", "info", "warn", "error"];
  const log = (level, message, fields) => {
    const text = typeof message === "string" ? message : safeString(message);
    const f = fields === undefined || fields === null ? "null" : encode(fields, "log fields");
    send('["log",' + JSONStringify(level) + "," + JSONStringify(clip(text)) + "," + f + "]");
  };

  // -- event and command handlers -------------------------------------------------
  // The plugin's handlers stay here, under ids the shim gives them; the host
  // knows only the ids, and it decides (grants, declarations, limits)
  // whether a registration stands. Registering returns a disposable at once;
  // a registration the host refuses is removed again, rejects its
  // `registered` promise and, if nobody looked at that promise, is reported
  // in the plugin's log.
  let nextHandler = 1;
  const eventHandlers = new MapCtor();
  const commandHandlers = new MapCtor();
  const register = (handlers, op, undoOp, name, handler, what) => {
    if (typeof name !== "string") {
      throw new TypeErrorCtor(what + "(): the " + (op === "events.on" ? "pattern" : "name") + " must be a string");
    }
    if (typeof handler !== "function") throw new TypeErrorCtor(what + "(): the handler must be a function");
    const id = nextHandler++;
    ReflectApply(mapSet, handlers, [id, handler]);
    let asked;
    try { asked = call(op, [name, id]); } catch (e) { ReflectApply(mapDelete, handlers, [id]); throw e; }
    let disposed = false;
    let watched = false;
    const registered = then(asked, () => undefined, (e) => {
      disposed = true;
      ReflectApply(mapDelete, handlers, [id]);
      if (!watched) send('["error",' + JSONStringify(what) + "," + errorText(e) + "]");
      throw e;
    });
    then(registered, undefined, () => {});  // reported above, or to whoever awaits it
    return ObjectFreeze({
      // Idempotent; resolves once the host has dropped the registration
      // (never rejects: a plugin that is no longer active has none left).
      dispose() {
        if (disposed) return resolved(undefined);
        disposed = true;
        ReflectApply(mapDelete, handlers, [id]);
        let undone;
        try { undone = call(undoOp, [id]); } catch (_) { return resolved(undefined); }
        return then(undone, () => undefined, () => undefined);
      },
      get registered() { watched = true; return registered; },
    });
  };

  // -- ctx -----------------------------------------------------------------------
  const method = (fn) => ObjectFreeze(fn);
  const logApi = ObjectCreate(null);
  for (const level of LEVELS) {
    logApi[level] = method((message, fields) => { log(level, message, fields); });
  }
  const optional = (v) => (v === undefined ? null : v);
  // What the previous version's deactivate returned (hot reload), as the
  // activate entry delivered it: undefined when the host passed none.
  let previousState;
  const ctxObject = {
    plugin: ObjectFreeze({ id: PLUGIN_ID, version: PLUGIN_VERSION }),
    log: ObjectFreeze(logApi),
    storage: ObjectFreeze({
      get: method((key, defaultValue) => call("storage.get", [key, optional(defaultValue)])),
      set: method((key, value) => call("storage.set", [key, value])),
      delete: method((key) => call("storage.delete", [key])),
      keys: method((prefix) => call("storage.keys", [prefix === undefined ? "" : prefix])),
    }),
    settings: ObjectFreeze({
      get: method((key) => call("settings.get", [key])),
      all: method(() => call("settings.all", [])),
      set: method((key, value) => call("settings.set", [key, value])),
    }),
    events: ObjectFreeze({
      on: method((pattern, handler) =>
        register(eventHandlers, "events.on", "events.off", pattern, handler, "ctx.events.on")),
      emit: method((name, payload) => then(call("events.emit", [name, optional(payload)]), () => undefined)),
    }),
    host: ObjectFreeze({
      call: method((name, params) => call("host.call", [name, optional(params)])),
    }),
    commands: ObjectFreeze({
      register: method((name, handler) =>
        register(commandHandlers, "commands.register", "commands.unregister", name, handler, "ctx.commands.register")),
    }),
    subscriptions: [],
  };
  ObjectDefineProperty(ctxObject, "previousState", {
    get: method(() => previousState), enumerable: true, configurable: false,
  });
  const ctx = ObjectFreeze(ctxObject);

  // -- console -------------------------------------------------------------------
  const format = (args) => {
    const parts = [];
    for (let i = 0; i < args.length; i++) {
      const a = args[i];
      let s;
      if (typeof a === "string") s = a;
      else if (a !== null && typeof a === "object" && !(a instanceof ErrorCtor)) {
        try { s = encode(a, "value"); } catch (_) { s = safeString(a); }
      } else if (a instanceof ErrorCtor) {
        const info = errorInfo(a);
        s = info.stack || info.name + ": " + info.message;
      } else s = safeString(a);
      parts[parts.length] = s;
    }
    return ReflectApply(arrayJoin, parts, [" "]);
  };
  const consoleApi = ObjectCreate(null);
  const consoleLevels = { log: "info", info: "info", debug: "debug", warn: "warn", error: "error", trace: "debug" };
  for (const name of ObjectKeys(consoleLevels)) {
    const level = consoleLevels[name];
    consoleApi[name] = method((...args) => { log(level, format(args)); });
  }

  // -- timers (the host owns the clock) -------------------------------------------------
  let nextTimer = 1;
  const timers = new MapCtor();
  const addTimer = (fn, delay, args, repeat) => {
    if (typeof fn !== "function") throw new TypeErrorCtor("timer callback must be a function");
    if (closed) return 0;
    if (mapSize(timers) >= LIMITS.maxTimers) {
      throw new RangeErrorCtor("more than " + LIMITS.maxTimers + " timers are pending");
    }
    let ms = +delay;
    if (!(ms >= 0)) ms = 0;
    if (ms > 2147483647) ms = 2147483647;
    // As browsers do: an interval never fires more often than every 4 ms.
    if (repeat && ms < 4) ms = 4;
    const id = nextTimer++;
    ReflectApply(mapSet, timers, [id, { fn, args, repeat, ms }]);
    send('["timer",' + id + "," + ms + "]");
    return id;
  };
  const clearTimer = (id) => {
    if (typeof id !== "number" || !ReflectApply(mapHas, timers, [id])) return;
    ReflectApply(mapDelete, timers, [id]);
    send('["untimer",' + id + "]");
  };

  // -- module ------------------------------------------------------------------------
  const mod = { exports: {} };
  const requireStub = method((name) => {
    throw new ErrorCtor("require(" + JSONStringify(safeString(name)) +
      ") is not available in hostrt plugins: bundle dependencies into plugin.js");
  });

  const define = (name, value, writable) => {
    const old = ObjectGetOwnPropertyDescriptor(global, name);
    if (old !== undefined && !old.configurable) {
      global[name] = value;  // a `var` from mini-racer's own setup: writable, not configurable
    } else {
      ObjectDefineProperty(global, name, { value, writable, configurable: writable, enumerable: false });
    }
  };
  define("module", mod, true);
  define("exports", mod.exports, true);
  define("require", requireStub, true);
  define("console", ObjectFreeze(consoleApi), true);
  define("setTimeout", method((fn, ms, ...args) => addTimer(fn, ms, args, false)), true);
  define("setInterval", method((fn, ms, ...args) => addTimer(fn, ms, args, true)), true);
  define("clearTimeout", method(clearTimer), true);
  define("clearInterval", method(clearTimer), true);
  // V8 leaves queueMicrotask to the embedder. A throwing callback is
  // reported as uncaught, as it would be in a browser or Node.
  define("queueMicrotask", method((fn) => {
    if (typeof fn !== "function") throw new TypeErrorCtor("queueMicrotask callback must be a function");
    then(PromiseCtor.resolve(), () => {
      try { ReflectApply(fn, undefined, []); } catch (e) { send('["error","microtask",' + errorText(e) + "]"); }
    });
  }), true);
  define("HostrtError", HostrtError, true);
  define("CapabilityError", CapabilityError, true);

  // -- entries -------------------------------------------------------------------------
  let exported = null;
  const finish = (entryId, ok, value) => {
    let text;
    if (ok) {
      try { text = encode(value === undefined ? null : value, "result"); }
      catch (e) { ok = false; text = errorText(e); }
    } else text = errorText(value);
    send('["done",' + entryId + "," + (ok ? "true" : "false") + "," + text + "]");
  };
  // Runs fn(); reports its result (awaited if it is a promise) through
  // done(ok, value), by default as the "done" message of entryId.
  const runEntry = (entryId, fn, done) => {
    const report = done || ((ok, value) => finish(entryId, ok, value));
    let result;
    let thenable;
    // Reading `then` runs plugin code (a getter, a Proxy trap) that may throw.
    try { result = fn(); thenable = isThenable(result); } catch (e) { report(false, e); return; }
    if (!thenable) { report(true, result); return; }
    try {
      then(PromiseCtor.resolve(result), (v) => report(true, v), (e) => report(false, e));
    } catch (e) { report(false, e); }
  };
  const exportedFunction = (name) => {
    if (exported === null) {
      const ex = mod.exports;
      exported = {
        activate: ex !== null && (typeof ex === "object" || typeof ex === "function") ? ex.activate : undefined,
        deactivate: ex !== null && (typeof ex === "object" || typeof ex === "function") ? ex.deactivate : undefined,
        exports: ex,
      };
    }
    const fn = exported[name];
    return typeof fn === "function" ? fn : null;
  };

  // Errors of one event entry sent to the host in full; of the rest (a
  // plugin may have a thousand handlers) only a short summary.
  const MAX_REPORTED = 10;
  const short = (s) => (s.length > 200 ? slice(s, 0, 200) + "... [cut]" : s);

  // Runs each step in turn, awaiting the promises they return, and resolves
  // once all ran; every failure is added to `errors` (one failing step does
  // not stop the rest).
  const sequence = (steps, errors) => new PromiseCtor((resolve) => {
    let i = 0;
    const failed = (e) => { errors[errors.length] = errorInfo(e); };
    const next = () => {
      while (i < steps.length) {
        const step = steps[i++];
        let r;
        let thenable;
        // Reading `then` runs plugin code (a getter, a Proxy trap) that may throw.
        try { r = step(); thenable = isThenable(r); } catch (e) { failed(e); continue; }
        if (thenable) {
          try {
            then(resolved(r), next, (e) => { failed(e); next(); });
            return;
          } catch (e) { failed(e); }
        }
      }
      resolve();
    };
    next();
  });

  const targets = ObjectFreeze({
    __proto__: null,
    // args: the previous version's state (a JSON value), or null.
    activate(entryId, args) {
      previousState = args === null ? undefined : args;
      const fn = exportedFunction("activate");
      if (fn === null) {
        finish(entryId, false, new TypeErrorCtor("plugin.js does not export a function activate(ctx)"));
        return;
      }
      const deactivate = exported.deactivate;
      if (deactivate !== undefined && deactivate !== null && typeof deactivate !== "function") {
        finish(entryId, false, new TypeErrorCtor("plugin.js exports deactivate, but it is not a function"));
        return;
      }
      runEntry(entryId, () => ReflectApply(fn, exported.exports, [ctx]));
    },
    // Reports the state deactivate returned (JSON, or null) when it and
    // every disposer succeeded; else {errors, state}, where `state` says why
    // the returned value was refused (or is null).
    deactivate(entryId) {
      const errors = [];
      const steps = [];
      // The returned value is encoded as soon as it is known, so that no
      // disposer can change it, under the state's own size limit.
      let stateText = "null";
      let stateRefusal = null;
      // Plugin code (a getter, a Proxy trap) threw while the value was read.
      const unreadable = (e) => { stateRefusal = { kind: "threw", error: errorInfo(e) }; };
      const keep = (value) => {
        if (value === undefined || value === null) return;
        refusal = null;
        try { stateText = encode(value, "state", "$", LIMITS.maxStateChars); } catch (e) {
          if (refusal !== null && refusal.error === e) {
            stateRefusal = { kind: refusal.kind, detail: clip(refusal.detail) };
          } else unreadable(e);
        }
        refusal = null;
      };
      const fn = exportedFunction("deactivate");
      if (fn !== null) {
        steps[steps.length] = () => {
          const returned = ReflectApply(fn, exported.exports, [ctx]);
          let thenable;
          // Reading `then` runs plugin code too: deactivate itself returned,
          // so a throw there makes the value unreadable.
          try { thenable = isThenable(returned); } catch (e) { unreadable(e); return undefined; }
          if (!thenable) { keep(returned); return undefined; }
          return then(resolved(returned), keep);
        };
      }
      // ctx.subscriptions is read after deactivate ran: it may add to it.
      steps[steps.length] = () => {
        const subs = ctx.subscriptions;
        const disposers = [];
        if (ArrayIsArray(subs)) {
          for (let i = subs.length - 1; i >= 0; i--) {
            const d = subs[i];
            disposers[disposers.length] = () => {
              if (d === null || (typeof d !== "object" && typeof d !== "function") || typeof d.dispose !== "function") {
                throw new TypeErrorCtor("ctx.subscriptions holds something without a dispose() method");
              }
              return ReflectApply(d.dispose, d, []);
            };
          }
        }
        return sequence(disposers, errors);
      };
      then(sequence(steps, errors), () => {
        closed = true;
        ReflectApply(mapClear, eventHandlers, []);
        ReflectApply(mapClear, commandHandlers, []);
        ReflectApply(mapForEach, timers, [(_, id) => send('["untimer",' + id + "]")]);
        ReflectApply(mapClear, timers, []);
        if (errors.length === 0 && stateRefusal === null) send('["done",' + entryId + ",true," + stateText + "]");
        else send('["done",' + entryId + ",false," + encode({ errors, state: stateRefusal }, "errors") + "]");
      });
    },
    // The host calls an exported function by name with JSON arguments
    // (the building block for commands and event handlers).
    call(entryId, args) {
      exportedFunction("activate");  // fills `exported`
      const ex = exported.exports;
      const fn = ex !== null && (typeof ex === "object" || typeof ex === "function") ? ex[args[0]] : undefined;
      if (typeof fn !== "function") {
        finish(entryId, false, new TypeErrorCtor("plugin.js does not export a function " + args[0] + "()"));
        return;
      }
      runEntry(entryId, () => ReflectApply(fn, ex, args[1]));
    },
    // One event for handlers [ids] of this plugin, in that order: each gets
    // its own copy of the payload and of {name, source}, an async handler
    // is awaited before the next starts, and a handler that throws does not
    // stop the others. The result lists the errors.
    event(entryId, args) {
      const ids = args[0];
      const payload = args[1];
      const name = args[2].name;
      const source = args[2].source;
      const text = ids.length > 1 ? JSONStringify(payload) : null;
      const errors = [];
      const steps = [];
      let fresh = true;
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i];
        steps[steps.length] = () => {
          const handler = ReflectApply(mapGet, eventHandlers, [id]);
          if (handler === undefined) return undefined;  // disposed since the event was sent
          const copy = fresh ? payload : JSONParse(text);
          fresh = false;
          return ReflectApply(handler, undefined, [copy, { name, source }]);
        };
      }
      then(sequence(steps, errors), () => {
        if (errors.length === 0) { finish(entryId, true, null); return; }
        for (let i = MAX_REPORTED; i < errors.length; i++) {
          const info = errors[i];
          info.name = short(info.name);
          info.message = short(info.message);
          info.stack = "";
        }
        finish(entryId, true, { errors });
      });
    },
    // A command: the handler registered under the id, with the parameters.
    command(entryId, args) {
      const handler = ReflectApply(mapGet, commandHandlers, [args[0]]);
      if (handler === undefined) {
        finish(entryId, false, new ErrorCtor("no handler is registered for it any more"));
        return;
      }
      const params = args[2];
      runEntry(entryId, () => ReflectApply(handler, undefined, [params]));
    },
    timer(entryId, args) {
      const id = args[0];
      const t = ReflectApply(mapGet, timers, [id]);
      if (t === undefined) return;
      if (t.repeat) send('["timer",' + id + "," + t.ms + "]");
      else ReflectApply(mapDelete, timers, [id]);
      // Nobody awaits a timer: a failure is reported as uncaught.
      runEntry(entryId, () => ReflectApply(t.fn, undefined, t.args), (ok, value) => {
        if (!ok) send('["error","timer",' + errorText(value) + "]");
      });
    },
  });

  const deliver = (msg) => {
    const kind = msg[0];
    if (kind === "reply") settle(msg[1], msg[2], msg[3]);
    else if (kind === "enter") {
      // Plugin code can call the pump itself; an entry id is written into
      // the outbox as it is, so only the host's kind (a safe integer) runs.
      if (!NumberIsSafeInteger(msg[1]) || msg[1] < 0) return;
      const target = targets[msg[2]];
      if (target === undefined) finish(msg[1], false, new ErrorCtor("unknown entry " + msg[2]));
      else target(msg[1], msg[3]);
    }
  };

  const pump = (text) => {
    const inbound = JSONParse(text);
    for (let i = 0; i < inbound.length; i++) {
      try { deliver(inbound[i]); } catch (e) {
        try { send('["error","shim",' + errorText(e) + "]"); } catch (_) {}
      }
    }
    return takeOutbox();
  };
  ObjectDefineProperty(global, "__hostrt_pump", {
    value: ObjectFreeze(pump), writable: false, configurable: false, enumerable: false,
  });
})(globalThis);
