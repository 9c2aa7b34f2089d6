"""Stores notes under storage keys "note.<n>", keeps a tag index, emits
"notes.added" for each new note and answers the "notes.add" and
"notes.search" commands."""

import re
from datetime import date

TAG = re.compile(r"#(\w+)")

SEED = [
    "Ship the #release notes",
    "Ask about the #release date and #budget",
    "Water the plants",
]


def add_note(ctx, text):
    number = ctx.storage.get("next", 1)
    ctx.storage.set("note." + str(number), {"text": text, "day": date.today().isoformat()})
    ctx.storage.set("next", number + 1)
    tags = ctx.storage.get("tags", {})
    for tag in TAG.findall(text):
        tags.setdefault(tag, []).append(number)
    ctx.storage.set("tags", tags)
    return number


def tidy(ctx):
    """Drop the oldest notes beyond the maxNotes setting."""
    keys = sorted(ctx.storage.keys("note."), key=lambda k: int(k.split(".")[1]))
    limit = ctx.settings.get("maxNotes")
    dropped = 0
    for key in keys[: max(0, len(keys) - limit)]:
        ctx.storage.delete(key)
        dropped += 1
    ctx.settings.set("lastTidy", date.today().isoformat())
    return dropped


def activate(ctx):
    if not ctx.storage.keys("note."):
        for text in SEED:
            add_note(ctx, text)
    dropped = tidy(ctx)
    tags = ctx.storage.get("tags", {})
    summary = ", ".join(f"#{tag} x{len(notes)}" for tag, notes in sorted(tags.items()))
    ctx.log.info(f"{len(ctx.storage.keys('note.'))} notes; tags: {summary}", {"dropped": dropped})

    def add(params):
        text = params["text"]
        number = add_note(ctx, text)
        # Subscribers (the digest plugin, hello-js) hear about it; the
        # host checks the payload against the schema in plugin.json first.
        ctx.events.emit("notes.added", {"number": number, "text": text, "tags": TAG.findall(text)})
        return number

    def search(params):
        numbers = ctx.storage.get("tags", {}).get(params["tag"], [])
        found = [ctx.storage.get("note." + str(n)) for n in numbers]
        return [note["text"] for note in found if note is not None]

    ctx.commands.register("notes.add", add)
    ctx.commands.register("notes.search", search)


def deactivate(ctx):
    ctx.log.info("notes saved")
