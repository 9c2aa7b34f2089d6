// @ts-check
// Greets on activation, remembers how many times it has been activated, and
// welcomes every note the notes plugin announces.
"use strict";

/** @typedef {import("hostrt").Context} Context */
/** @typedef {import("hostrt").Disposable} Disposable */

/**
 * Disposed automatically when the host deactivates the plugin.
 * @implements {Disposable}
 */
class Farewell {
    /**
     * @param {Context} ctx
     * @param {string} name
     */
    constructor(ctx, name) {
        this.ctx = ctx;
        this.name = name;
    }

    dispose() {
        this.ctx.log.info("goodbye, " + this.name);
    }
}

/** Notes welcomed so far: in memory only, but handed to the next version
 * when the host hot-reloads the plugin (see deactivate). */
let welcomed = 0;

/** @param {Context} ctx */
async function activate(ctx) {
    /** @type {string} */
    const name = await ctx.settings.get("name");
    let greeting = `hello, ${name}!`;
    if (await ctx.settings.get("shout")) {
        greeting = greeting.toUpperCase();
    }
    const count = (await ctx.storage.get("activations", 0)) + 1;
    await ctx.storage.set("activations", count);
    ctx.log.info(greeting, { activations: count });
    ctx.subscriptions.push(new Farewell(ctx, name));

    // After a hot reload: what the previous version's deactivate returned.
    const previous = /** @type {{welcomed?: unknown} | undefined} */ (ctx.previousState);
    if (previous !== undefined && typeof previous.welcomed === "number") {
        welcomed = previous.welcomed;
        ctx.log.info(`reloaded: ${welcomed} notes welcomed so far`);
    }

    // notes-py (a Python plugin) declares "notes.added"; the host checked
    // the payload against its schema before this handler sees it.
    /** @type {import("hostrt").EventHandler<{number: number, text: string, tags: string[]}>} */
    const welcome = (note, event) => {
        welcomed += 1;
        ctx.log.info(`welcome, note ${note.number} from ${event.source}!`, { tags: note.tags.length });
    };
    ctx.events.on("notes.added", welcome);
}

/** @param {Context} ctx */
function deactivate(ctx) {
    ctx.log.info(`${ctx.plugin.id} ${ctx.plugin.version} deactivating`);
    return { welcomed };  // the next version's ctx.previousState on a hot reload
}

/** @type {import("hostrt").PluginModule} */
module.exports = { activate, deactivate };
