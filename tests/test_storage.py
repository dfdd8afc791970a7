"""Storage configuration and the one client code path (chDB and HTTP)."""

from __future__ import annotations

import logging
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from otel_margin import environment_variables as env
from otel_margin.exporters.storage import (
    RELEASE_MARKER,
    StorageConfig,
    StorageUnavailable,
    open_client,
    session,
)

ENV_VARS = [
    env.OTEL_EXPORTER_CLICKHOUSE_ENDPOINT, env.OTEL_EXPORTER_CLICKHOUSE_DATABASE,
    env.OTEL_EXPORTER_CLICKHOUSE_USERNAME, env.OTEL_EXPORTER_CLICKHOUSE_PASSWORD,
    env.OTEL_EXPORTER_CLICKHOUSE_TTL_DAYS, env.OTEL_EXPORTER_CLICKHOUSE_TIMEOUT,
    env.OTEL_EXPORTER_CLICKHOUSE_SPOOL_DIR, env.OTEL_EXPORTER_CLICKHOUSE_SPOOL_MAX_MB,
    env.OTEL_EXPORTER_CLICKHOUSE_DRAIN_INTERVAL,
]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def test_defaults_are_embedded_under_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = StorageConfig.from_env()
    assert config.embedded and config.database == "otel_margin" and config.ttl_days == 180
    assert config.chdb_path == tmp_path.resolve() / ".otel-margin" / "chdb"
    assert config.spool_path == tmp_path.resolve() / ".otel-margin" / "spool"


def test_environment_then_arguments(monkeypatch):
    monkeypatch.setenv(env.OTEL_EXPORTER_CLICKHOUSE_ENDPOINT, "http://ch.internal:8123")
    monkeypatch.setenv(env.OTEL_EXPORTER_CLICKHOUSE_TIMEOUT, "2.5")
    monkeypatch.setenv(env.OTEL_EXPORTER_CLICKHOUSE_TTL_DAYS, "0")
    monkeypatch.setenv(env.OTEL_EXPORTER_CLICKHOUSE_DRAIN_INTERVAL, "30")
    config = StorageConfig.from_env(database="margin_test", timeout=None)
    assert (config.endpoint, config.timeout, config.ttl_days, config.database, config.drain_interval) == (
        "http://ch.internal:8123", 2.5, 0, "margin_test", 30.0)
    assert not config.embedded


def test_bad_environment_values_are_logged_and_replaced(monkeypatch, caplog):
    monkeypatch.setenv(env.OTEL_EXPORTER_CLICKHOUSE_ENDPOINT, "mysql://nope")
    monkeypatch.setenv(env.OTEL_EXPORTER_CLICKHOUSE_TIMEOUT, "soon")
    monkeypatch.setenv(env.OTEL_EXPORTER_CLICKHOUSE_SPOOL_MAX_MB, "-1")
    monkeypatch.setenv(env.OTEL_EXPORTER_CLICKHOUSE_DRAIN_INTERVAL, "0")
    with caplog.at_level(logging.WARNING):
        config = StorageConfig.from_env()
    assert config == StorageConfig()
    logged = caplog.text
    assert env.OTEL_EXPORTER_CLICKHOUSE_ENDPOINT in logged and "mysql://nope" in logged
    assert env.OTEL_EXPORTER_CLICKHOUSE_TIMEOUT in logged and env.OTEL_EXPORTER_CLICKHOUSE_SPOOL_MAX_MB in logged
    assert env.OTEL_EXPORTER_CLICKHOUSE_DRAIN_INTERVAL in logged


@pytest.mark.parametrize(
    "kwargs",
    [{"endpoint": "ftp://x"}, {"endpoint": "chdb://"}, {"database": "a;drop"}, {"ttl_days": -1},
     {"timeout": 0}, {"spool_max_mb": -2}, {"ttl_days": True}, {"drain_interval": 0},
     {"drain_interval": float("inf")}],
)
def test_bad_arguments_raise_value_error_naming_the_value(kwargs):
    with pytest.raises(ValueError) as error:
        StorageConfig(**kwargs)
    assert repr(next(iter(kwargs.values()))) in str(error.value)


@settings(max_examples=80, deadline=None)
@given(values=st.lists(st.text(max_size=20), min_size=len(ENV_VARS), max_size=len(ENV_VARS)))
def test_any_environment_gives_a_valid_config(values):
    with pytest.MonkeyPatch.context() as mp:
        for name, value in zip(ENV_VARS, values):
            if "\x00" not in value:
                mp.setenv(name, value)
        config = StorageConfig.from_env()
    assert StorageConfig(**{f: getattr(config, f) for f in StorageConfig.__dataclass_fields__}) == config


def test_session_releases_the_chdb_directory_for_other_processes(tmp_path):
    config = StorageConfig(endpoint=f"chdb://{tmp_path / 'db'}")
    probe = (
        "import sys; sys.path.insert(0, %r)\n"
        "from otel_margin.exporters.storage import StorageConfig, StorageUnavailable, session\n"
        "try:\n"
        "    with session(StorageConfig(endpoint=%r, timeout=1)) as c: print('opened', c.command('SELECT 41 + 1'))\n"
        "except StorageUnavailable as e: print('unavailable', e)\n"
    ) % (str(Path(__file__).parent), config.endpoint)
    with session(config) as client:
        client.command("CREATE TABLE IF NOT EXISTS default.t (a UInt8) ENGINE = MergeTree ORDER BY a")
        held = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert held.stdout.startswith("unavailable")  # a session does not give the directory up
    assert not (config.chdb_path / RELEASE_MARKER).exists()  # the asker took its request back
    assert str(config.chdb_path) in held.stdout and env.OTEL_EXPORTER_CLICKHOUSE_ENDPOINT in held.stdout
    released = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert released.stdout.strip() == "opened 42"


def test_http_client_through_the_loopback_server(clickhouse_server):
    config = StorageConfig(endpoint=clickhouse_server.url, timeout=5)
    with session(config, compress="lz4") as client:
        assert client.command("SELECT 1 + {x:UInt8}", parameters={"x": 1}) == 2
        assert client.query("SELECT version()").result_rows[0][0]


def test_unreachable_server_raises_storage_unavailable_naming_the_endpoint():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again: nothing listens here
    config = StorageConfig(endpoint=f"http://127.0.0.1:{port}", timeout=1)
    with pytest.raises(StorageUnavailable) as error:
        open_client(config)
    assert config.endpoint in str(error.value) and env.OTEL_EXPORTER_CLICKHOUSE_ENDPOINT in str(error.value)


@pytest.fixture(scope="module")
def clickhouse_server(tmp_path_factory):
    import os

    from clickhouse_http import LoopbackClickHouse, RealClickHouse

    url = os.environ.get("OTEL_MARGIN_TEST_CLICKHOUSE_URL")
    server = RealClickHouse(url) if url else LoopbackClickHouse(tmp_path_factory.mktemp("chdb-http"))
    yield server
    server.stop()
