"""Greets on activation and remembers how many times it has been activated."""


class Farewell:
    """Disposed automatically when the host deactivates the plugin."""

    def __init__(self, ctx, name):
        self.ctx = ctx
        self.name = name

    def dispose(self):
        self.ctx.log.info("goodbye, " + self.name)


def activate(ctx):
    name = ctx.settings.get("name")
    greeting = "hello, {}!".format(name)
    if ctx.settings.get("shout"):
        greeting = greeting.upper()
    count = ctx.storage.get("activations", 0) + 1
    ctx.storage.set("activations", count)
    ctx.log.info(greeting, {"activations": count})
    ctx.subscriptions.append(Farewell(ctx, name))


def deactivate(ctx):
    ctx.log.info(f"{ctx.plugin.id} {ctx.plugin.version} deactivating")
