"""The plugin manager: built-in guardrails and third-party plugins, loaded one way.

Built-in guardrails are listed in ``otel_margin.plugins.DEFAULT_PLUGINS`` and registered
exactly as external plugins are; external plugins come from the ``otel_margin``
entry-point group. :func:`load_plugins` is idempotent and never runs at import time.
"""

from __future__ import annotations

import importlib
import logging
import os
import threading
from importlib.metadata import entry_points

import pluggy

from otel_margin import hookspecs
from otel_margin.environment_variables import OTEL_MARGIN_DISABLE_PLUGINS, OTEL_MARGIN_PLUGINS

logger = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "otel_margin"



class PluginManager(pluggy.PluginManager):
    """pluggy's manager, plus a cheap answer, on every call, to "which hooks have implementations?"."""

    def __init__(self, project_name: str) -> None:
        super().__init__(project_name)
        self._in_use: frozenset[str] | None = None

    def register(self, plugin: object, name: str | None = None) -> str | None:
        self._in_use = None
        try:
            return super().register(plugin, name)
        finally:
            self._in_use = None

    def unregister(self, plugin: object | None = None, name: str | None = None) -> object | None:
        self._in_use = None
        try:
            return super().unregister(plugin, name)
        finally:
            self._in_use = None

    def hooks_in_use(self) -> frozenset[str]:
        """Names of the hooks at least one registered plugin implements."""
        in_use = self._in_use
        if in_use is None:
            in_use = frozenset(
                name for name, caller in vars(self.hook).items()
                if isinstance(caller, pluggy.HookCaller) and caller.get_hookimpls()
            )
            self._in_use = in_use
        return in_use


pm = PluginManager(hookspecs.PROJECT)
pm.add_hookspecs(hookspecs)

_loaded = False
_lock = threading.Lock()


def load_plugins(policy: object | None = None) -> pluggy.PluginManager:
    """Register the built-in and installed guardrail plugins once, then configure them.

    ``OTEL_MARGIN_PLUGINS`` (allow-list) and ``OTEL_MARGIN_DISABLE_PLUGINS`` (block-list;
    ``*`` stops entry-point autoload) choose which plugins load, by name.
    """
    global _loaded
    with _lock:
        if _loaded:
            return pm
        _loaded = True
        allowed = _names(os.environ.get(OTEL_MARGIN_PLUGINS))
        blocked = _names(os.environ.get(OTEL_MARGIN_DISABLE_PLUGINS))
        for name, module_name in _default_plugins():
            if _wanted(name, allowed, blocked):
                _register(name, lambda module_name=module_name: importlib.import_module(module_name))
        if "*" not in blocked:
            for entry_point in entry_points(group=ENTRY_POINT_GROUP):
                if _wanted(entry_point.name, allowed, blocked) and pm.get_plugin(entry_point.name) is None:
                    _register(entry_point.name, entry_point.load)
        if policy is None:
            from otel_margin.policy import load_policy_or_empty

            policy = load_policy_or_empty()
        configure(policy)
        return pm


def configure(policy: object) -> None:
    """Call every plugin's ``margin_configure``; a plugin that raises is unregistered."""
    for impl in pm.hook.margin_configure.get_hookimpls():
        try:
            impl.function(policy=policy)
        except ValueError as error:  # a setting the plugin cannot use: its message says which and the fix
            logger.error("otel-margin: plugin %r is disabled: %s", impl.plugin_name, error)
            pm.unregister(impl.plugin)
        except Exception:  # noqa: BLE001 - one broken plugin must not break the others
            logger.exception("otel-margin: plugin %r failed to configure; it is disabled", impl.plugin_name)
            pm.unregister(impl.plugin)


def _default_plugins() -> list[tuple[str, str]]:
    try:
        from otel_margin.plugins import DEFAULT_PLUGINS
    except ImportError:  # pragma: no cover - the built-ins ship with the package
        return []
    return [(module_name.rsplit(".", 1)[-1], module_name) for module_name in DEFAULT_PLUGINS]


def _register(name: str, load: object) -> None:
    try:
        plugin = load()  # type: ignore[operator]
        pm.register(plugin, name=name)
    except Exception:  # noqa: BLE001 - a plugin that cannot load must not stop the app
        logger.exception("otel-margin: could not load guardrail plugin %r; it is skipped", name)


def _wanted(name: str, allowed: set[str], blocked: set[str]) -> bool:
    return name not in blocked and (not allowed or name in allowed)


def _names(value: str | None) -> set[str]:
    return {part.strip() for part in (value or "").split(",") if part.strip()}
