"""The policy file: the user's own prices, discounts, features and route mapping.

One TOML file (``OTEL_MARGIN_POLICY``, else ``./otel-margin.toml``) says what the public
catalog cannot know: contract discounts, fine-tuned and private model prices, self-hosted
cost, which HTTP route is which feature, and what a feature earns per call. It is validated
in full when it is loaded; every error names the file, the line, the key and the fix::

    otel-margin.toml line 12: [prices.models."ft:gpt-4o-mini:acme"] unknown key
    'inptu_per_mtok'; did you mean 'input_per_mtok'?

The accepted keys are one table, :data:`SCHEMA`, so a later feature adds a key there (and
in ``docs/policy.md``) rather than writing another parser.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from decimal import Decimal
from fnmatch import fnmatchcase
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit
from typing import Any, Mapping, Union

from otel_margin.config_warnings import warn_once
from otel_margin.display import printable, printable_lines
from otel_margin.environment_variables import OTEL_MARGIN_POLICY
from otel_margin.policy_values import (
    _Invalid,
    Key,
    Table,
    TableMap,
    TableArray,
    PluginTables,
    Spec,
    money,
    percent,
    text,
    positive_int,
    floor_percent,
    band_points,
    positive_number,
    feature_category,
    calendar_date,
    webhook_url,
    webhook_format,
    cooldown_hours,
    value_weight,
    share_percent,
    _show,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on 3.10 only
    import tomli as tomllib

logger = logging.getLogger(__name__)

DEFAULT_POLICY_FILE = "otel-margin.toml"
"""Looked for in the working directory when ``OTEL_MARGIN_POLICY`` is not set."""


class PolicyError(ValueError):
    """The policy file cannot be used; the message names the file, line, key and fix.

    A file with several errors gets them all in one message, one line each in line order;
    ``errors`` holds them as a list.
    """

    def __init__(self, message: str, errors: list[str] | None = None) -> None:
        super().__init__(message)
        self.errors: list[str] = errors if errors is not None else [message]


# --- the policy, as the rest of the package sees it --------------------------------------


@dataclass(frozen=True, slots=True)
class FeaturePolicy:
    """Settings of one feature (``[features.NAME]``)."""

    name: str
    unit_price_usd: Decimal | None = None
    """Usage-priced revenue of one call of this feature."""
    outcome_prices: Mapping[str, Decimal] = field(default_factory=dict)
    """Revenue of one unit of work per outcome status (``[features.NAME.outcome_prices]``); a
    status not listed earns 0 when any is listed (a failed unit earns nothing)."""


@dataclass(frozen=True, slots=True)
class Discount:
    """A contract discount on catalog prices (``[[prices.discounts]]``)."""

    provider: str
    percent: Decimal
    """Strictly between 0 and 100: ``15`` means you pay 85% of the catalog price."""
    model: str | None = None
    """A glob (``gpt-4o*``) matched against the model id; ``None`` means every model."""
    line: int | None = None

    def applies_to(self, providers: tuple[str, ...], models: tuple[str, ...]) -> bool:
        """True when any of ``providers`` is this discount's and any of ``models`` matches."""
        wanted = self.provider.lower()
        if not any(p.lower() == wanted for p in providers):
            return False
        if self.model is None:
            return True
        pattern = self.model.lower()
        return any(fnmatchcase(m.lower(), pattern) for m in models)


@dataclass(frozen=True, slots=True)
class ModelPricePolicy:
    """A custom, private or fine-tuned model's price per million tokens (``[prices.models.ID]``)."""

    model: str
    input_per_mtok: Decimal
    output_per_mtok: Decimal
    provider: str | None = None
    """When set, only calls to this provider match; ``None`` matches any provider."""
    cache_read_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    cache_write_1h_per_mtok: Decimal | None = None
    """One-hour cache writes (Anthropic's ``ttl: "1h"``); ``None``: priced by rule (docs/policy.md)."""
    line: int | None = None


@dataclass(frozen=True, slots=True)
class SelfHostedPolicy:
    """A self-hosted model's cost (``[prices.self_hosted.ID]``): per GPU-second or per token."""

    model: str
    provider: str | None = None
    gpu_second_usd: Decimal | None = None
    gpus: int = 1
    input_per_mtok: Decimal | None = None
    output_per_mtok: Decimal | None = None
    cache_read_per_mtok: Decimal | None = None
    cache_write_per_mtok: Decimal | None = None
    cache_write_1h_per_mtok: Decimal | None = None
    """One-hour cache writes (Anthropic's ``ttl: "1h"``); ``None``: priced by rule (docs/policy.md)."""
    line: int | None = None


@dataclass(frozen=True, slots=True)
class HostPolicy:
    """A server named by its host (``[hosts."HOST:PORT"]``): its provider, and maybe its prices."""

    host: str
    """As written in the file (``gpu-1:8000``)."""
    provider: str
    """The ``gen_ai.provider.name`` of calls to this host."""
    prices: SelfHostedPolicy | None = None
    """What every model served there costs (``model`` is ``*``); ``None``: priced by provider and model."""
    line: int | None = None


def _frozen_map() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Policy:
    """The loaded policy file. ``Policy()`` is the empty policy (no file)."""

    source: str | None = None
    """Path of the file it was loaded from; ``None`` for the empty default."""
    version: str = ""
    """Short stable hash of the file content (``""`` without a file); part of price versions."""
    routes: Mapping[str, str] = field(default_factory=_frozen_map)
    """HTTP route template of the enclosing server span → feature, in file order."""
    features: Mapping[str, FeaturePolicy] = field(default_factory=_frozen_map)
    discounts: tuple[Discount, ...] = ()
    """In file order; the first one that applies to a call wins."""
    models: Mapping[str, ModelPricePolicy] = field(default_factory=_frozen_map)
    """Keyed by lower-cased model id."""
    self_hosted: Mapping[str, SelfHostedPolicy] = field(default_factory=_frozen_map)
    """Keyed by lower-cased model id."""
    hosts: Mapping[str, HostPolicy] = field(default_factory=_frozen_map)
    """Keyed by lower-cased ``host:port`` or ``host`` (IPv6 addresses without brackets)."""
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=_frozen_map)
    """``[plugins.NAME]`` tables as written, for each plugin's ``margin_configure``."""
    document: Mapping[str, Any] = field(default_factory=_frozen_map)
    """The whole validated file as parsed (money already ``Decimal``): how the read side
    (``otel_margin.analysis``) reads the tables it declares in :data:`SCHEMA`."""
    lines: Mapping[tuple[str, ...], int] = field(default_factory=_frozen_map)
    """Line of each key and table of the file, by path (``("plugins", "cache", "store")``)."""

    def where(self, *path: str) -> str:
        """``otel-margin.toml line 12`` for a key or table: how errors found after loading say where."""
        line = self.lines.get(path)
        return f"{self.display_name} line {line}" if line is not None else self.display_name

    @property
    def display_name(self) -> str:
        """How messages name the file: its path, or ``(no policy file)``."""
        return self.source if self.source is not None else "(no policy file)"

    def host(self, address: str, port: int | None) -> HostPolicy | None:
        """The ``[hosts]`` entry for a server at ``address:port``: ``host:port`` first, then ``host``."""
        hosts = self.hosts
        if not hosts:
            return None
        return hosts.get(f"{address}:{port}") or hosts.get(address)


def load_policy(path: str | os.PathLike[str] | None = None) -> Policy:
    """Load and validate the policy file.

    ``path`` wins; else ``$OTEL_MARGIN_POLICY``; else ``./otel-margin.toml`` when it exists;
    else the empty :class:`Policy`. Raises :class:`PolicyError` (a ``ValueError``) naming
    the file, line, key and fix when the file is missing, not TOML, or not valid policy.
    """
    if path is None:
        env_path = os.environ.get(OTEL_MARGIN_POLICY, "").strip()
        if env_path:
            if not Path(env_path).is_file():
                raise PolicyError(
                    f"{OTEL_MARGIN_POLICY}={env_path}: no such file; "
                    f"fix the path or unset {OTEL_MARGIN_POLICY}"
                )
            path = env_path
        elif Path(DEFAULT_POLICY_FILE).is_file():
            path = DEFAULT_POLICY_FILE
        else:
            return Policy()
    name = os.fspath(path)
    try:
        raw = Path(name).read_bytes()
    except FileNotFoundError:
        raise PolicyError(f"{name}: no such policy file; fix the path") from None
    except OSError as error:
        raise PolicyError(f"{name}: cannot read the policy file ({error.strerror})") from None
    return parse_policy(raw, source=name)


def load_policy_or_empty() -> Policy:
    """:func:`load_policy` for the running application: a broken file is logged, not raised.

    A typo in the policy must not stop the application; it runs with the empty policy and
    ``otel-margin prices`` (or any command reading the file) shows the same error to fix it.
    """
    try:
        return load_policy()
    except PolicyError as error:
        # Once per process, not once per instrumentor that reads the file.
        warn_once(logger, "otel-margin: policy file ignored: %s", printable_lines(str(error)), level=logging.ERROR)
        return Policy()


def parse_policy(content: bytes | str, *, source: str = DEFAULT_POLICY_FILE) -> Policy:
    """Validate policy ``content`` (TOML) as if read from the file named ``source``."""
    raw = content.encode("utf-8") if isinstance(content, str) else content
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PolicyError(f"{source}: not UTF-8 text (byte {error.start}); save it as UTF-8") from None
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise PolicyError(_toml_error_message(source, str(error))) from None
    checker = _Checker(source, _Locator(text))
    data = checker.table(SCHEMA, document, ())
    _check_priced_once(data, checker)
    _check_hosts(data, checker)
    if checker.errors:
        # Every error at once, in line order: one run of `otel-margin prices` fixes the whole file.
        errors = [message for _, message in sorted(checker.errors, key=lambda e: (e[0] is None, e[0] or 0))]
        raise PolicyError("\n".join(errors), errors)
    return _build_policy(data, source, hashlib.sha256(raw).hexdigest()[:8], checker.locator)


# --- the schema: one table of every key the file accepts ----------------------------------


def _self_hosted_rule(table: dict[str, Any]) -> str | None:
    per_second = "gpu_second_usd" in table
    per_token = "input_per_mtok" in table or "output_per_mtok" in table
    if per_second and per_token:
        return "sets both gpu_second_usd and per-token prices; keep one way of pricing"
    if per_token and not ("input_per_mtok" in table and "output_per_mtok" in table):
        missing = "output_per_mtok" if "input_per_mtok" in table else "input_per_mtok"
        return f"missing required key '{missing}'; add {missing} = \"0.50\""
    if not per_second and not per_token:
        return 'has no price; add gpu_second_usd = "0.0011" or input_per_mtok and output_per_mtok'
    if "gpus" in table and not per_second:
        return "sets gpus without gpu_second_usd; add gpu_second_usd or remove gpus"
    return None


def _host_rule(table: dict[str, Any]) -> str | None:
    # A host without prices only names its provider; with prices, they follow [prices.self_hosted]'s rules.
    if not any(key in table for key in _HOST_PRICE_KEYS):
        return None
    return _self_hosted_rule(table)


_MTOK_KEYS: dict[str, Spec] = {
    "input_per_mtok": Key(money, '"0.30"', required=True),
    "output_per_mtok": Key(money, '"1.20"', required=True),
    "cache_read_per_mtok": Key(money, '"0.15"'),
    "cache_write_per_mtok": Key(money, '"0.375"'),
    "cache_write_1h_per_mtok": Key(money, '"0.60"'),
}

SCHEMA = Table(
    {
        "attribution": Table({"routes": TableMap(Key(text, '"summarize"'))}),
        # The AI share of a tier's subscription (read by otel_margin.analysis.allocation; docs/margin.md).
        "tiers": TableMap(Table({"ai_share_pct": Key(share_percent, "40")})),
        "features": TableMap(Table({
            "unit_price_usd": Key(money, '"0.02"'),
            "outcome_prices": TableMap(Key(money, '"2.00"')),
            # Revenue allocation (read by otel_margin.analysis.allocation; docs/margin.md).
            "value_weight": Key(value_weight, "3"),
            "floor_pct": Key(floor_percent, "55"),
            "category": Key(feature_category, '"core"'),
            "yellow_band_pts": Key(band_points, "5"),
        })),
        # Floors and zones (read by otel_margin.analysis.zones; docs/alerts.md).
        "zones": Table({
            "default_category": Key(feature_category, '"core"'),
            "yellow_band_pts": Key(band_points, "5"),
            "growth_floor_pct": Key(floor_percent, "40"),
            "core_floor_pct": Key(floor_percent, "55"),
            "premium_floor_pct": Key(floor_percent, "65"),
        }),
        "exceptions": TableArray(Table({
            "feature": Key(text, '"onboarding"', required=True),
            "owner": Key(text, '"jane@example.com"', required=True),
            "reason": Key(text, '"land-and-expand pricing until Q2"', required=True),
            "review_date": Key(calendar_date, "2027-03-31", required=True),
        })),
        "alerts": Table({
            # Thresholds of the built-in rules (otel_margin.analysis.alerts.thresholds).
            "thresholds": Table({
                "cost_to_revenue_ratio": Key(positive_number, "0.8"),
                "cost_rise_pct": Key(positive_number, "15"),
                "daily_rise_pct": Key(positive_number, "2"),
                "price_change_pct": Key(positive_number, "1"),
                "unpriced_share_pct": Key(percent, "1"),
                "unattributed_share_pct": Key(percent, "5"),
                "min_calls": Key(positive_int, "20"),
                "customer_window_days": Key(positive_int, "30"),
            }),
            # Evaluation and delivery (otel_margin.analysis.alerts.settings; docs/alerts.md).
            "cooldown_hours": Key(cooldown_hours, "24"),
            "rules_dir": Key(text, '"alert-rules"'),
            "webhooks": TableArray(Table({
                "name": Key(text, '"slack-margin"', required=True),
                "url": Key(webhook_url, '"https://hooks.slack.com/services/T000/B000/XXXX"', required=True),
                "format": Key(webhook_format, '"slack"'),
                "timeout_seconds": Key(positive_number, "5"),
                "headers": TableMap(Key(text, '"Bearer s3cret"')),
            })),
            "runbook": Table({
                "responder": Key(text, '"margin-oncall@example.com"'),
                "responders": TableMap(Key(text, '"jane@example.com"')),
                "red": Key(text, '"act within 24 h"'),
                "yellow": Key(text, '"investigate within 48 h"'),
                "info": Key(text, '"routine"'),
            }),
        }),
        # The weekly and quarterly reviews (otel_margin.analysis.reviews.settings; docs/reviews.md).
        "reviews": Table({
            "small_output_tokens": Key(positive_int, "256"),
            "trend_threshold_pct": Key(positive_number, "5"),
            "self_hosting_monthly_usd": Key(money, '"15000"'),
        }),
        "prices": Table(
            {
                "discounts": TableArray(
                    Table(
                        {
                            "provider": Key(text, '"openai"', required=True),
                            "model": Key(text, '"gpt-4o*"'),
                            "percent": Key(percent, "15", required=True),
                        }
                    )
                ),
                "models": TableMap(Table({"provider": Key(text, '"openai"'), **_MTOK_KEYS})),
                "self_hosted": TableMap(
                    Table(
                        {
                            "provider": Key(text, '"vllm"'),
                            "gpu_second_usd": Key(money, '"0.0011"'),
                            "gpus": Key(positive_int, "2"),
                            **{
                                name: Key(spec.coerce, spec.example)
                                for name, spec in _MTOK_KEYS.items()
                                if isinstance(spec, Key)
                            },
                        },
                        check=_self_hosted_rule,
                    )
                ),
            }
        ),
        "plugins": PluginTables(),
        "hosts": TableMap(
            Table(
                {
                    "provider": Key(text, '"vllm"', required=True),
                    "gpu_second_usd": Key(money, '"0.0011"'),
                    "gpus": Key(positive_int, "2"),
                    **{
                        name: Key(spec.coerce, spec.example)
                        for name, spec in _MTOK_KEYS.items()
                        if isinstance(spec, Key)
                    },
                },
                check=_host_rule,
            )
        ),
    }
)
"""Every table and key the policy file accepts. Add new keys here and in docs/policy.md."""

_HOST_PRICE_KEYS = ("gpu_second_usd", "gpus", *_MTOK_KEYS)


# --- validation ---------------------------------------------------------------------------

PathPart = Union[str, int]


_INVALID = object()
"""Stands for a value that failed its check, so cross-key rules still see the key as present."""


class _Checker:
    """Walks a parsed document against a spec, collecting every error with file and line."""

    def __init__(self, source: str, locator: "_Locator") -> None:
        self.source = source
        self.locator = locator
        self.errors: list[tuple[int | None, str]] = []

    def table(self, spec: Table, value: Any, path: tuple[PathPart, ...]) -> dict[str, Any]:
        if not isinstance(value, dict):
            return self.fail(path, None, f"must be a table, not {_type_name(value)}", {})
        result: dict[str, Any] = {}
        suggested: set[str] = set()
        for key, item in value.items():
            child = spec.keys.get(key)
            if child is None:
                hint = difflib.get_close_matches(key, list(spec.keys), n=1, cutoff=0.6)
                fix = f"did you mean '{hint[0]}'?" if hint else f"known keys: {', '.join(spec.keys)}"
                what = "unknown top-level key" if not path else "unknown key"
                self.fail(path, key, f"{what} '{printable(key)}'; {fix}")
                suggested.update(hint)
                continue
            result[key] = self.value(child, item, path, key)
        for key, child in spec.keys.items():
            # A misspelt required key is one error (its did-you-mean), not also a missing key.
            if isinstance(child, Key) and child.required and key not in value and key not in suggested:
                self.fail(path, None, f"missing required key '{key}'; add {key} = {child.example}")
        if spec.check is not None and (problem := spec.check(result)):
            self.fail(path, None, problem)
        return result

    def value(self, spec: Spec, value: Any, path: tuple[PathPart, ...], key: str) -> Any:
        here = path + (key,)
        if isinstance(spec, Table):
            return self.table(spec, value, here)
        if isinstance(spec, TableMap):
            if not isinstance(value, dict):
                return self.fail(path, key, f"{key} must be a table, not {_type_name(value)}", {})
            return {name: self.value(spec.value, item, here, name) for name, item in value.items()}
        if isinstance(spec, PluginTables):
            if not isinstance(value, dict):
                return self.fail(path, key, f"{key} must be a table, not {_type_name(value)}", {})
            for name, table in value.items():
                if not isinstance(table, dict):
                    self.fail(here, name, f"{name} must be a table ([plugins.{_quote_key(name)}]), "
                              f"not {_type_name(table)}")
            return {name: table for name, table in value.items() if isinstance(table, dict)}
        if isinstance(spec, TableArray):
            if not isinstance(value, list):
                return self.fail(path, key, f"{key} must be an array of tables ([[{_dotted(here)}]]), "
                                 f"not {_type_name(value)}", [])
            return [self.table(spec.table, item, here + (index,)) for index, item in enumerate(value)]
        try:
            return spec.coerce(value)
        except _Invalid as expected:
            return self.fail(path, key, f"{key} = {_show(value)} is not valid; expected {expected}", _INVALID)

    def fail(self, path: tuple[PathPart, ...], key: str | None, problem: str, result: Any = None) -> Any:
        """Record an error at the line of ``path`` (+ ``key``); ``result`` stands in for the value."""
        line = self.locator.line_of(path + ((key,) if key is not None else ()))
        where = f"{self.source} line {line}" if line is not None else self.source
        table = f"{_table_name(path)} " if path else ""
        self.errors.append((line, f"{where}: {table}{problem}"))
        return result


def _check_priced_once(data: dict[str, Any], checker: _Checker) -> None:
    prices = data.get("prices", {})
    models, self_hosted = prices.get("models", {}), prices.get("self_hosted", {})
    lowered = {model.lower() for model in models}
    for model in self_hosted:
        if model.lower() in lowered:
            line = checker.locator.line_of(("prices", "self_hosted", model))
            where = f"{checker.source} line {line}" if line is not None else checker.source
            checker.errors.append((line, f"{where}: model '{printable(model)}' is priced in both "
                                         "[prices.models] and [prices.self_hosted]; keep one"))


def _check_hosts(data: dict[str, Any], checker: _Checker) -> None:
    """Each ``[hosts."KEY"]`` is a ``host`` or ``host:port``, and names one server once."""
    seen: dict[str, str] = {}
    for key in data.get("hosts", {}):
        line = checker.locator.line_of(("hosts", key))
        where = f"{checker.source} line {line}" if line is not None else checker.source
        try:
            normal = host_key(key)
        except _Invalid as problem:
            checker.errors.append((line, f"{where}: [hosts.{_quote_key(key)}] {problem}"))
            continue
        if normal in seen:
            checker.errors.append(
                (line, f"{where}: [hosts.{_quote_key(key)}] names the same server as "
                       f"[hosts.{_quote_key(seen[normal])}]; keep one")
            )
        else:
            seen[normal] = key


def host_key(key: str) -> str:
    """``key`` as :meth:`Policy.host` looks it up (``gpu-1:8000``, ``gpu-1``); raises ``_Invalid``."""
    written = key.strip()
    if "://" in written or "/" in written:
        netloc = urlsplit(written if "://" in written else f"//{written}").netloc
        fix = f'; write [hosts."{printable(netloc)}"]' if netloc else ""
        raise _Invalid(f"is a URL, not a host{fix} (the host and port of the client's base_url)")
    try:
        parts = urlsplit(f"//{written}")
        address, port = parts.hostname, parts.port
    except ValueError:
        raise _Invalid('has a port that is not a number from 1 to 65535; write [hosts."gpu-1:8000"]') from None
    if not address or parts.username is not None or port == 0:
        raise _Invalid('is not a host or host:port; write [hosts."gpu-1:8000"] or [hosts."gpu-1"]')
    address = address.rstrip(".")
    return f"{address}:{port}" if port is not None else address


def _build_policy(data: dict[str, Any], source: str, version: str, locator: "_Locator") -> Policy:
    prices = data.get("prices", {})
    features = {
        name: FeaturePolicy(name=name, unit_price_usd=settings.get("unit_price_usd"),
                            outcome_prices=dict(settings.get("outcome_prices", {})))
        for name, settings in data.get("features", {}).items()
    }
    discounts = tuple(
        Discount(
            provider=entry["provider"],
            percent=entry["percent"],
            model=entry.get("model"),
            line=locator.line_of(("prices", "discounts", index)),
        )
        for index, entry in enumerate(prices.get("discounts", []))
    )
    models = {
        model.lower(): ModelPricePolicy(
            model=model, line=locator.line_of(("prices", "models", model)), **settings
        )
        for model, settings in prices.get("models", {}).items()
    }
    self_hosted = {
        model.lower(): SelfHostedPolicy(
            model=model, line=locator.line_of(("prices", "self_hosted", model)), **settings
        )
        for model, settings in prices.get("self_hosted", {}).items()
    }
    hosts = {}
    for key, settings in data.get("hosts", {}).items():
        priced = {name: value for name, value in settings.items() if name in _HOST_PRICE_KEYS}
        line = locator.line_of(("hosts", key))
        prices = SelfHostedPolicy(model="*", provider=settings["provider"], line=line, **priced) if priced else None
        hosts[host_key(key)] = HostPolicy(host=key, provider=settings["provider"], prices=prices, line=line)
    lines: dict[tuple[str, ...], int] = {}
    _note_lines(data, (), locator, lines)
    return Policy(
        source=source,
        version=version,
        plugins=MappingProxyType(dict(data.get("plugins", {}))),
        document=MappingProxyType(data),
        lines=MappingProxyType(lines),
        routes=MappingProxyType(dict(data.get("attribution", {}).get("routes", {}))),
        features=MappingProxyType(features),
        discounts=discounts,
        models=MappingProxyType(models),
        self_hosted=MappingProxyType(self_hosted),
        hosts=MappingProxyType(hosts),
    )


def _note_lines(table: Any, path: tuple[str, ...], locator: "_Locator", lines: dict[tuple[str, ...], int]) -> None:
    if not isinstance(table, dict):
        return
    for key, value in table.items():
        here = path + (key,)
        line = locator.line_of(here)
        if line is not None:
            lines[here] = line
        _note_lines(value, here, locator, lines)


# --- messages -------------------------------------------------------------------------------

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)\s*$")


def _toml_error_message(source: str, message: str) -> str:
    match = _TOML_POSITION.search(message)
    if match is None:
        return f"{source}: not valid TOML: {message}"
    reason = message[: match.start()]
    return f"{source} line {match.group(1)}, column {match.group(2)}: not valid TOML: {reason}"


def _quote_key(key: str) -> str:
    # Dashed names are valid bare keys, but model ids read better quoted: [prices.models."gpt-4o"].
    return key if re.fullmatch(r"[A-Za-z0-9_]+", key) else json.dumps(key)


def _dotted(path: tuple[PathPart, ...]) -> str:
    return ".".join(_quote_key(part) for part in path if isinstance(part, str))


def _table_name(path: tuple[PathPart, ...]) -> str:
    if path and isinstance(path[-1], int):
        return f"[[{_dotted(path)}]] (entry {path[-1] + 1})"
    return f"[{_dotted(path)}]"


def _type_name(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string",
             list: "an array", dict: "a table"}
    return names.get(type(value), type(value).__name__)


# --- line numbers: tomllib gives none, so find keys and headers in the raw text ------------


class _Locator:
    """Maps a key path to the line that defines it, by scanning the raw TOML text.

    Best effort by design: it understands table headers, arrays of tables and (dotted)
    keys, which covers every policy file we document. A path it cannot place falls back to
    its nearest enclosing table, and finally to no line at all.
    """

    def __init__(self, text: str) -> None:
        self._lines: dict[tuple[PathPart, ...], int] = {}
        array_counts: dict[tuple[PathPart, ...], int] = {}
        table: tuple[PathPart, ...] = ()
        in_multiline: str | None = None
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if in_multiline is not None:
                if stripped.count(in_multiline) % 2 == 1:
                    in_multiline = None
                continue
            if not stripped or stripped.startswith("#"):
                continue
            if stripped.startswith("[["):
                parsed = _parse_key(stripped, 2)
                if parsed is not None:
                    base = tuple(parsed[0])
                    index = array_counts.get(base, 0)
                    array_counts[base] = index + 1
                    table = base + (index,)
                    self._remember(table, number)
                continue
            if stripped.startswith("["):
                parsed = _parse_key(stripped, 1)
                if parsed is not None:
                    table = tuple(parsed[0])
                    self._remember(table, number)
                continue
            parsed = _parse_key(stripped, 0)
            if parsed is not None and stripped[parsed[1]:].lstrip().startswith("="):
                self._remember(table + tuple(parsed[0]), number)
                rest = stripped[parsed[1]:]
                for quote in ('"""', "'''"):
                    if rest.count(quote) % 2 == 1:
                        in_multiline = quote

    def _remember(self, path: tuple[PathPart, ...], number: int) -> None:
        for end in range(1, len(path) + 1):
            self._lines.setdefault(path[:end], number)

    def line_of(self, path: tuple[PathPart, ...]) -> int | None:
        """The line defining ``path`` or, failing that, its nearest enclosing table."""
        while path:
            if path in self._lines:
                return self._lines[path]
            path = path[:-1]
        return None


def _parse_key(line: str, start: int) -> tuple[list[str], int] | None:
    """Parse a (dotted, possibly quoted) TOML key at ``start``: its parts and end offset."""
    parts: list[str] = []
    i, n = start, len(line)
    while True:
        while i < n and line[i] in " \t":
            i += 1
        if i >= n:
            return None
        if line[i] == '"':
            j = i + 1
            while j < n and line[j] != '"':
                j += 2 if line[j] == "\\" else 1
            if j >= n:
                return None
            try:
                parts.append(json.loads(line[i : j + 1]))
            except ValueError:
                parts.append(line[i + 1 : j])
            i = j + 1
        elif line[i] == "'":
            j = line.find("'", i + 1)
            if j < 0:
                return None
            parts.append(line[i + 1 : j])
            i = j + 1
        else:
            match = _BARE_KEY.match(line, i)
            if match is None:
                return None
            parts.append(match.group())
            i = match.end()
        while i < n and line[i] in " \t":
            i += 1
        if i < n and line[i] == ".":
            i += 1
            continue
        return parts, i
