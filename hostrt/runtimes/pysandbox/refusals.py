"""The exceptions plugin code sees when the sandbox refuses something.

They are ordinary exceptions inside plugin code (a plugin may catch them and
carry on: nothing was done), and the runtime maps them to the public
:mod:`hostrt.errors` classes when they escape an entry:

=========================  ==================================
raised inside the plugin   reported to the host as
=========================  ==================================
``SandboxPolicyError``     ``SandboxViolationError``
``SandboxImportError``     ``SandboxViolationError``
``SandboxLimitError``      ``ResourceLimitError``
``BudgetInterrupt``        ``BudgetExceededError``
=========================  ==================================

``BudgetInterrupt`` is a ``BaseException`` so that ``except Exception`` in
plugin code does not catch it; the policy additionally re-raises it at the
start of every ``except`` and ``finally`` block, so no handler can swallow it.
"""

from __future__ import annotations


class SandboxRefusal:
    """Marker mixed into every refusal raised by the sandbox."""


class SandboxPolicyError(SandboxRefusal, Exception):
    """Plugin code tried something the sandbox forbids (an underscore or
    interpreter-internal attribute, a write to an object it does not own,
    attribute access inside a format string)."""


class SandboxImportError(SandboxRefusal, ImportError):
    """``import`` of a module outside the allow-list. An ``ImportError`` so
    that ``try: import x / except ImportError:`` works as usual."""


class SandboxLimitError(SandboxRefusal, MemoryError):
    """A checked operation would produce a value past a sandbox limit. A
    ``MemoryError`` because that is what the operation would have been."""


class BudgetInterrupt(BaseException):
    """The plugin's time budget for the current entry is spent.

    Raised from budget checks inside plugin code; never exposed by name.
    """

    def __init__(self) -> None:
        super().__init__("plugin time budget exceeded")
