"""Zero-code start: ``opentelemetry-instrument python app.py`` with otel-margin installed.

:class:`MarginDistro` only sets defaults (``os.environ.setdefault``): whatever the user
configured wins. With the ClickHouse exporter on, that includes a short span-processor delay
(:data:`CLICKHOUSE_SCHEDULE_DELAY_MILLIS`). It also makes one failing instrumentor — ours or anybody's — a logged,
skipped instrumentor instead of an application that does not start.
:class:`MarginConfigurator` is the SDK's own configurator (providers, exporters, sampler
from the standard ``OTEL_*`` variables), registered so the SDK is set up even when no
other distro is installed.
"""

from __future__ import annotations

import logging
import os
from importlib.metadata import entry_points
from typing import Any

from opentelemetry.environment_variables import (
    OTEL_LOGS_EXPORTER,
    OTEL_METRICS_EXPORTER,
    OTEL_TRACES_EXPORTER,
)
from opentelemetry.instrumentation.distro import BaseDistro
from opentelemetry.sdk._configuration import _OTelSDKConfigurator
from opentelemetry.sdk.environment_variables import OTEL_BSP_SCHEDULE_DELAY

logger = logging.getLogger(__name__)

CLICKHOUSE_SCHEDULE_DELAY_MILLIS = 200
"""``OTEL_BSP_SCHEDULE_DELAY`` when the ClickHouse exporter is on and the user set none (the SDK's
default is 5,000): a finished call reaches the spool within about this long, which bounds what a
``kill -9`` loses (docs/reliability.md). It applies to every batch span processor the SDK
configures, an ``otlp`` one beside ours included."""


class MarginDistro(BaseDistro):
    """Defaults for running under ``opentelemetry-instrument``; never overrides the user."""

    def _configure(self, **kwargs: Any) -> None:
        os.environ.setdefault(OTEL_TRACES_EXPORTER, default_traces_exporter())
        os.environ.setdefault(OTEL_METRICS_EXPORTER, "none")
        os.environ.setdefault(OTEL_LOGS_EXPORTER, "none")
        if "clickhouse" in {name.strip() for name in os.environ[OTEL_TRACES_EXPORTER].split(",")}:
            # A crash (kill -9) loses what the span processor holds: keep that to a moment.
            os.environ.setdefault(OTEL_BSP_SCHEDULE_DELAY, str(CLICKHOUSE_SCHEDULE_DELAY_MILLIS))

    def load_instrumentor(self, entry_point: Any, **kwargs: Any) -> None:
        try:
            super().load_instrumentor(entry_point, **kwargs)
        except ImportError:
            raise  # the loader already skips these quietly
        except Exception:  # noqa: BLE001 - one broken instrumentor must not stop the app
            logger.exception("otel-margin: instrumentor %r failed and is skipped", entry_point.name)


class MarginConfigurator(_OTelSDKConfigurator):
    """The OpenTelemetry SDK configurator, unchanged (see the module docstring)."""


def default_traces_exporter() -> str:
    """``clickhouse`` when otel-margin's ClickHouse exporter is installed, else ``console``."""
    names = {entry_point.name for entry_point in entry_points(group="opentelemetry_traces_exporter")}
    return "clickhouse" if "clickhouse" in names else "console"
