"""Instrumentors: ``BaseInstrumentor`` subclasses that patch the LLM SDKs.

:class:`PatchingInstrumentor` holds what every SDK instrumentor does the same way: wrap
a list of methods with the pipeline's wrappers, and on uninstrument take out only our own
layer: ``unwrap`` removes whatever wrapper is outermost, which may be somebody else's.

Each SDK module is patched when the application imports it (a post-import hook; at once if it
already has), not at instrument time: importing ``anthropic`` and ``openai`` takes seconds, and
``opentelemetry-instrument`` instruments at start-up whatever is installed. The pipeline, the
plugins and the price catalog (0.2 s of imports and parsing) load with the first patched module,
in that import, so the first call finds the catalog built and the finisher never imports it.
``openai`` imports its resources lazily: ``import openai`` alone loads nothing of ours, the first
``client.chat`` does (benchmarks/README.md, "startup.py").
"""

from __future__ import annotations

import importlib
import logging
import threading
import weakref
from contextlib import AbstractContextManager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Callable, Collection, Mapping

import wrapt
from opentelemetry import trace
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor

from otel_margin.finisher import flush_before_exporters
from otel_margin.policy import Policy, load_policy_or_empty

if TYPE_CHECKING:  # the pipeline loads with the SDK (see the module docstring)
    from otel_margin.pipeline import Endpoint, Settings

logger = logging.getLogger(__name__)
_instance_lock = threading.Lock()
_route_trackers: weakref.WeakSet[Any] = weakref.WeakSet()  # not ids: a collected provider's id is reused


@dataclass(frozen=True, slots=True)
class Patch:
    """One SDK method to wrap: ``module``, ``Class.method``, and how to read its calls."""

    module: str
    attribute: str
    endpoint: Endpoint | None = None
    is_async: bool = False
    factory: Callable[[Settings], Callable[..., Any]] | None = None
    """A custom wrapper factory (for patches that are not LLM calls themselves)."""


class PatchingInstrumentor(BaseInstrumentor):
    """Base of the SDK instrumentors: subclasses list their :class:`Patch` targets."""

    _instruments: Collection[str] = ()
    sdk: str = ""
    """The SDK's top-level package."""
    modules: tuple[str, ...] = ()
    """Every module :meth:`patches` names: each is patched when the application imports it."""

    def patches(self) -> list[Patch]:  # pragma: no cover - abstract
        raise NotImplementedError

    def instrumentation_dependencies(self) -> Collection[str]:
        return self._instruments

    def _instrument(self, **kwargs: Any) -> None:
        # Never raise: under opentelemetry-instrument one failing instrumentor stops the others.
        self._applied: list[tuple[Any, str, Any]] = []
        try:
            policy = load_policy_or_empty()
            # Now, not with the SDK: a server span opened before the SDK is imported must be seen.
            _track_server_routes(policy.routes, kwargs.get("tracer_provider"))
            flush_before_exporters(kwargs.get("tracer_provider") or trace.get_tracer_provider())
        except Exception:  # noqa: BLE001
            logger.exception("otel-margin: %s could not start; the SDK is left uninstrumented", type(self).__name__)
            return
        with self._lock():
            self._pending: tuple[Policy, Mapping[str, Any]] | None = (policy, kwargs)
            self._settings: Settings | None = None
            self._patched_modules: set[str] = set()
        for name in self.modules:
            # Runs at once for a module the application has imported already.
            wrapt.register_post_import_hook(self._on_import, name)

    def _on_import(self, module: Any) -> None:
        """Post-import hook of a patched module: patch it. Never raises: that would fail the import."""
        name = getattr(module, "__name__", "")
        with self._lock():
            pending = getattr(self, "_pending", None)
            if pending is None or name in self._patched_modules:
                return  # uninstrumented before the import, or patched by an earlier cycle's hook
            self._patched_modules.add(name)
            try:
                self._patch_module(name, *pending)
            except Exception:  # noqa: BLE001
                self._pending = None  # one message, not one per module
                logger.exception("otel-margin: %s could not start; the SDK is left uninstrumented",
                                 type(self).__name__)

    def _patch_module(self, name: str, policy: Policy, kwargs: Mapping[str, Any]) -> None:
        settings = self._settings
        if settings is None:
            from otel_margin.pipeline import Settings

            settings = Settings.load(kwargs.get("tracer_provider"), kwargs.get("meter_provider"), policy)
            # One switch across instrument cycles: SDK objects keep bound methods (``with_raw_response``
            # holds ``create``), so a wrapper can outlive its patch; it follows the switch.
            settings = self._settings = replace(settings, enabled=self._switch())
            settings.enabled.set()
        for patch in self.patches():
            if patch.module != name:
                continue
            try:
                self._apply(patch, settings)
            except Exception:  # noqa: BLE001
                logger.exception("otel-margin: could not patch %s.%s; skipped", patch.module, patch.attribute)

    def _apply(self, patch: Patch, settings: Settings) -> None:
        owner = _owner(patch)
        if owner is None:
            return  # this SDK version has no such method
        if patch.factory is not None:
            wrapper = patch.factory(settings)
        else:
            from otel_margin.pipeline import async_wrapper, sync_wrapper

            make = async_wrapper if patch.is_async else sync_wrapper
            wrapper = make(patch.endpoint, settings)
        name = patch.attribute.rsplit(".", 1)[-1]
        wrapt.wrap_function_wrapper(owner, name, wrapper)
        self._applied.append((owner, name, wrapper))

    def _switch(self) -> threading.Event:
        switch = getattr(self, "_enabled", None)
        if switch is None:
            switch = self._enabled = threading.Event()
        return switch

    def _lock(self) -> AbstractContextManager[Any]:
        # The SDK's import, and so the patching, may happen on any thread.
        with _instance_lock:
            lock = getattr(self, "_patching", None)
            if lock is None:
                lock = self._patching = threading.RLock()
            return lock

    def ensure_outermost(self) -> None:
        """Move our wrappers outside any wrapper another instrumentation added after ours.

        When ours is the outer wrapper it calls past a peer's LLM instrumentation, so a call
        yields one LLM span; a peer wrapped outside ours would open a second one. Run after
        every instrumentor has loaded (``opentelemetry_post_instrument``).
        """
        for index, (owner, name, wrapper) in enumerate(getattr(self, "_applied", [])):
            current = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
            if isinstance(current, wrapt.FunctionWrapper) and current._self_wrapper is wrapper:
                continue
            ours, outer = _find_in_chain(current, wrapper)
            if ours is None or outer is None:
                continue
            outer.__wrapped__ = ours.__wrapped__  # unlink ours from the middle of the chain
            wrapt.wrap_function_wrapper(owner, name, wrapper)
            logger.debug("otel-margin: moved its wrapper of %s.%s outermost", getattr(owner, "__name__", owner), name)

    def _reorder(self, module: Any = None) -> None:
        """:meth:`ensure_outermost` as a post-import hook: never raises (that would fail the import)."""
        try:
            with self._lock():
                self.ensure_outermost()
        except Exception:  # noqa: BLE001 - never stop the application over ordering
            logger.debug("otel-margin: could not reorder wrappers", exc_info=True)

    def _uninstrument(self, **kwargs: Any) -> None:
        with self._lock():
            self._pending = self._settings = None  # a module imported from now on stays bare
            self._unpatch_sdk()

    def _unpatch_sdk(self) -> None:
        self._switch().clear()  # wrappers still held by SDK objects now pass calls through
        for owner, name, wrapper in reversed(getattr(self, "_applied", [])):
            current = owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)
            if isinstance(current, wrapt.FunctionWrapper) and current._self_wrapper is wrapper:
                setattr(owner, name, current.__wrapped__)
                continue
            # Wrapped again after us (and not unwrapped, as some peers fail to on newer SDKs):
            # take only our layer out of the chain and keep theirs.
            ours, outer = _find_in_chain(current, wrapper)
            if ours is not None and outer is not None:
                outer.__wrapped__ = ours.__wrapped__
        self._applied = []


def ensure_outermost() -> None:
    """``opentelemetry_post_instrument`` hook: make otel-margin's wrappers the outer ones.

    A module the application has not imported yet is reordered when it is: this hook's turn then
    comes after the import hooks every instrumentor registered while loading, so after a peer
    that patches the SDK on its import as we do (on the package's import or the module's).
    """
    for instrumentor_class in PatchingInstrumentor.__subclasses__():
        instance = getattr(instrumentor_class, "_instance", None)
        if instance is not None and instance.is_instrumented_by_opentelemetry:
            for name in (instance.sdk, *instance.modules):
                wrapt.register_post_import_hook(instance._reorder, name)  # at once if imported


def _find_in_chain(current: Any, wrapper: Any) -> tuple[Any, Any]:
    """Our FunctionWrapper in a chain of wrappers, and the wrapper directly outside it."""
    outer = None
    while isinstance(current, wrapt.FunctionWrapper):
        if current._self_wrapper is wrapper:
            return current, outer
        outer, current = current, current.__wrapped__
    return None, None


def _owner(patch: Patch) -> Any:
    try:
        target: Any = importlib.import_module(patch.module)
    except ImportError:
        return None
    *path, name = patch.attribute.split(".")
    for part in path:
        target = getattr(target, part, None)
        if target is None:
            return None
    return target if hasattr(target, name) else None


def _track_server_routes(routes: Mapping[str, str], tracer_provider: Any) -> None:
    if not routes:
        return
    from otel_margin.attribution import ServerRouteTracker

    provider = tracer_provider or trace.get_tracer_provider()
    if hasattr(provider, "add_span_processor") and provider not in _route_trackers:
        provider.add_span_processor(ServerRouteTracker())
        _route_trackers.add(provider)
