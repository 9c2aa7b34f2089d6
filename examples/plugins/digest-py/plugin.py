"""Keeps a rolling digest of the last five activation days, follows new
notes (the "notes.added" event of notes-py) and, when the host announces
"app.started", reads the host's document list page by page."""

import json
from datetime import datetime, timezone


def activate(ctx):
    history = ctx.storage.get("history", [])
    history.append(datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"))
    history = history[-5:]
    ctx.storage.set("history", history)
    ctx.log.info("digest ready", {"runs": len(history), "history": json.dumps(history)})

    def on_note(note):
        tags = ", ".join("#" + tag for tag in note["tags"]) or "no tags"
        ctx.log.info(f"new note {note['number']}: {note['text']!r} ({tags})")

    def on_app_started(payload, event):
        # A paged host method: ask for pages until nextOffset is None.
        titles, pages, offset = [], 0, 0
        while offset is not None:
            page = ctx.host.call("workspace.documents", {"offset": offset, "limit": 100})
            titles += [doc["title"] for doc in page["items"]]
            pages += 1
            offset = page["nextOffset"]
        ctx.log.info(f"{event['source']} started {payload['app']} {payload['version']}: "
                     f"{len(titles)} documents in {pages} pages", {"first": titles[0]})

    ctx.events.on("notes.added", on_note)
    ctx.events.on("app.started", on_app_started)
