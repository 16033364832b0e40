"""The session's wire backend: a temporary folder, the CA (trusted by this process while a scenario runs), the
fault server; and which transport serves httpx in a scenario.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from harness.run.injector import Injector
from harness.run.recording import Recording
from harness.run.wire.forward import Forwarder, environment_proxies
from harness.run.wire.redirect import ForwardRedirect, Redirect, cleared_proxies, python_resolvers
from harness.run.wire.server import FaultServer
from harness.run.wire.tls import Authority
from harness.scenario.model import NOT_ON_WIRE, Scenario


def httpx_on_wire(scenario: Scenario, default: str) -> bool:
    """Whether httpx goes over the wire: the scenario's ``transport``, else the session's default.

    A scenario with a ``pool_timeout`` step (the client's own pool, which no
    connection can serve) stays on respx under a session default of ``wire``.
    """
    if scenario.transport is not None:
        return scenario.transport == "wire"
    return default == "wire" and not any(step.fault in NOT_ON_WIRE for _, step in scenario.steps())


class Wire:
    """The fault server and the CA of one session; everything is removed and undone at ``close``."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="harness-wire-"))
        self._stack = contextlib.ExitStack()
        self._stack.callback(shutil.rmtree, self.folder, ignore_errors=True)
        try:
            self.authority = Authority(self.folder)
            self.server = FaultServer(self.authority)
            self.server.start()
            self._stack.callback(self.server.stop)
        except BaseException:
            self._stack.close()
            raise

    def close(self) -> None:
        self._stack.close()

    @contextlib.contextmanager
    def forwarding(self, recording: Recording) -> Iterator[ForwardRedirect]:
        """Forward every request of a recording run to its real host, through the proxies named before it."""
        forwarder = Forwarder(recording, environment_proxies())
        with (
            cleared_proxies(),
            python_resolvers(),
            self.server.forwarding(forwarder, recording.guard.allowed_port, recording.recorder) as redirect,
        ):
            yield redirect

    @contextlib.contextmanager
    def serving(self, injector: Injector) -> Iterator[Redirect]:
        """Serve one scenario's endpoints on the wire: no proxies, Python's own resolvers, its schedules."""
        with cleared_proxies(), python_resolvers(), self.server.serving(injector) as redirect:
            yield redirect
