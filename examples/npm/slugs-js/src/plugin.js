// @ts-check
// Turns page titles into URL slugs with the `slugify` package from npm and
// keeps an index of them in plugin storage, one key per slug.
//
// This file is not loaded by the host: `npm run build` bundles it, together
// with its dependencies, into ../../plugins/slugs-js/plugin.js.
"use strict";

const slugify = require("slugify");

/** @typedef {import("hostrt").Context} Context */

/**
 * What the settings schema in plugin.json guarantees.
 * @typedef {{ titles: string[], lower: boolean, locale: string }} SlugSettings
 */

/**
 * One stored page. A `@typedef` (not a class) so that it is a plain JSON
 * object the host accepts.
 * @typedef {{ title: string, firstSeen: string }} Page
 */

// Storage keys are at most 100 characters: "page." plus up to 95 of slug.
const PREFIX = "page.";
const MAX_SLUG = 100 - PREFIX.length;

/**
 * The slug of a title: ASCII letters, digits and "-" only, which are all
 * valid in a storage key.
 * @param {string} title
 * @param {SlugSettings} settings
 */
function slugOf(title, settings) {
    const slug = slugify(title, {
        lower: settings.lower,
        strict: true,
        locale: settings.locale || undefined,
    });
    return slug.slice(0, MAX_SLUG).replace(/-+$/, "");
}

/** @param {Context} ctx */
async function activate(ctx) {
    /** @type {SlugSettings} */
    const settings = await ctx.settings.all();
    let added = 0;
    for (const title of settings.titles) {
        const slug = slugOf(title, settings);
        if (slug === "") {
            ctx.log.warn("title has nothing to make a slug of", { title });
            continue;
        }
        const key = PREFIX + slug;
        if ((await ctx.storage.get(key)) === null) {
            /** @type {Page} */
            const page = { title, firstSeen: new Date().toISOString() };
            await ctx.storage.set(key, page);
            added += 1;
        }
    }
    const slugs = (await ctx.storage.keys(PREFIX)).map((key) => key.slice(PREFIX.length));
    ctx.log.info(`${slugs.length} pages indexed`, { added, slugs });
}

/** @type {import("hostrt").PluginModule} */
module.exports = { activate };
