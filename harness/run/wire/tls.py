"""A throwaway certificate authority per session: one certificate per declared host, trusted by this process only.

The CA (``trustme``) and every key live in the session's temporary folder,
removed with it. While a scenario runs (never between runs), this process
trusts the CA through ``SSL_CERT_FILE`` (``ssl``'s default verify paths, hence
urllib, urllib3, httpx's default context), ``REQUESTS_CA_BUNDLE`` (requests),
``certifi.where()`` (a client given certifi's bundle by name), aiohttp's
contexts built at import, and any client context that verifies, at its first
handshake in a run (one built before the run, or given a CA file of its own,
keeps the CA: its key goes with the session). The bundle is every CA the process trusted
before (the files ``SSL_CERT_FILE`` and ``REQUESTS_CA_BUNDLE`` named,
``ssl``'s default CA file, certifi's) plus this one: the CA is added, nothing
trusted before is dropped (a corporate proxy's CA included, for the
subprocesses a test session starts). The system trust store is never
touched, and every change is undone at the end.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import importlib.util
import inspect
import os
import ssl
import sys
import threading
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import certifi
import trustme

from harness.run.environ import environ
from harness.run.guard import let_through
from harness.run.internals import replace, wrap

TRUST_VARIABLES = ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE")


def trusted_before() -> list[Path]:
    """The CA files this process trusts before the session changes anything, each once."""
    named = [os.environ.get(key) for key in TRUST_VARIABLES] + [ssl.get_default_verify_paths().cafile, certifi.where()]
    found = [Path(p).resolve() for p in named if p and Path(p).is_file()]
    return list(dict.fromkeys(found))


class Authority:
    """The session's CA and a server context per host, picked by SNI."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._ca = trustme.CA(organization_name="prefect-fault-harness (throwaway, this session only)")
        self.ca_file = folder / "ca.pem"
        self._ca.cert_pem.write_to_path(str(self.ca_file))
        self.bundle = folder / "bundle.pem"
        self.bundle.write_bytes(b"\n".join([*map(Path.read_bytes, trusted_before()), self.ca_file.read_bytes()]))
        self._contexts: dict[str, ssl.SSLContext] = {}
        self._lock = threading.Lock()
        self._aiohttp_context: ssl.SSLContext | None = None
        self._taught: weakref.WeakSet[ssl.SSLContext] = weakref.WeakSet()  # client contexts given the CA
        self._wrappers: dict[Callable[..., Any], Callable[..., Any]] = {}  # SSLContext.wrap_* -> the trusting one

    def context_for(self, host: str) -> ssl.SSLContext:
        """A server context presenting ``host``'s certificate (issued on first use), switching by SNI."""
        with self._lock:
            context = self._contexts.get(host)
            if context is None:
                path = self.folder / f"host-{len(self._contexts)}.pem"
                self._ca.issue_cert(host).private_key_and_cert_chain_pem.write_to_path(str(path))
                context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
                context.load_cert_chain(str(path))
                context.sni_callback = self._by_name
                self._contexts[host] = context
            return context

    def _by_name(self, sock: ssl.SSLObject | ssl.SSLSocket, name: str | None, context: ssl.SSLContext) -> None:
        if name and self._contexts.get(name) is not context:
            sock.context = self.context_for(name)

    def _bundle_path(self) -> str:
        return str(self.bundle)

    @contextlib.contextmanager
    def trusted(self) -> Iterator[None]:
        """This process trusts the CA until the block ends (one run); everything is as before afterwards.

        A module first imported during the run may keep what it read then
        (requests keeps ``certifi.where()`` as its default bundle and builds a
        context from it at import): requests is imported before the CA is
        trusted, and a module imported during the run that kept the bundle's
        path, or the stand-in for ``certifi.where``, gets the real ones back.
        """
        _import_before_trust()
        imported_before = "aiohttp.connector" in sys.modules
        modules = set(sys.modules)
        with contextlib.ExitStack() as stack:
            # A client given certifi's bundle by name (httpx.Client(verify=certifi.where())) gets this one.
            where = replace(stack, "certifi:where", self._bundle_path)
            # Run once the rest is undone (the trust variables too), before certifi's function is back.
            stack.callback(self._forget_imported, modules, where, imported_before)
            wrap(stack, "ssl:SSLContext.wrap_socket", self._trusting)
            wrap(stack, "ssl:SSLContext.wrap_bio", self._trusting)
            stack.enter_context(environ(dict.fromkeys(TRUST_VARIABLES, str(self.bundle))))
            if imported_before:  # built at import: one trusting the CA instead, built once a session
                if self._aiohttp_context is None:
                    self._aiohttp_context = sys.modules["aiohttp.connector"]._make_ssl_context(True)
                replace(stack, "aiohttp.connector:_SSL_CONTEXT_VERIFIED", self._aiohttp_context)
            yield

    def _forget_imported(self, modules: set[str], where: Any, aiohttp_imported: bool) -> None:
        """What the run imported keeps nothing of the CA: aiohttp's default context built without it, the
        stand-in ``where`` and the bundle's path given back."""
        if not aiohttp_imported and "aiohttp.connector" in sys.modules:
            connector: Any = sys.modules["aiohttp.connector"]
            connector._SSL_CONTEXT_VERIFIED = connector._make_ssl_context(True)
        self._forget([sys.modules.get(name) for name in set(sys.modules) - modules], where)

    def _trusting(self, wrap: Callable[..., Any]) -> Callable[..., Any]:
        """``SSLContext.wrap_socket`` / ``wrap_bio``: a client context that verifies learns the CA first.

        A context built before the run (a module-level ``httpx.Client``, made
        when the flow's module was imported) does not trust the CA; it learns
        it at its first handshake in a run. It keeps it: the CA's key is
        removed with the session, so nothing can be signed by it afterwards.
        """
        if wrap in self._wrappers:  # built once a session
            return self._wrappers[wrap]
        taught = self._taught
        ca = self.ca_file.read_text()
        signature = inspect.signature(wrap)

        @functools.wraps(wrap)
        def wrapped(context: ssl.SSLContext, *args: Any, **kwargs: Any) -> Any:
            server_side = signature.bind(context, *args, **kwargs).arguments.get("server_side", False)
            if (
                not server_side
                and context.verify_mode != ssl.CERT_NONE
                and context not in taught
                and not let_through()  # a recording's request to the real host verifies it with the process's trust
            ):
                context.load_verify_locations(cadata=ca)
                taught.add(context)
            return wrap(context, *args, **kwargs)

        self._wrappers[wrap] = wrapped
        return wrapped

    def _forget(self, modules: list[Any], where: Any) -> None:
        """What modules imported during the run kept of the CA: the stand-in ``where`` and the bundle's path."""
        bundle = str(self.bundle)
        for module in modules:
            for name, value in list(getattr(module, "__dict__", {}).items()):
                if getattr(value, "__self__", None) is self:  # the stand-in, a bound method of this authority
                    setattr(module, name, where)
                elif isinstance(value, str) and value == bundle:
                    setattr(module, name, where())


def _import_before_trust() -> None:
    """Import what builds its trust at import time, if it is installed: requests' default SSL context."""
    if "requests.adapters" not in sys.modules and importlib.util.find_spec("requests") is not None:
        importlib.import_module("requests.adapters")
