"""``otel-margin prices MODEL``: what a model costs, and why.

Shows the unit prices per million tokens of each component, what the model was priced as
(dated snapshot → family), where the price came from (catalog version or policy file and
line), the discount applied and a sample cost, exactly as calls are priced at run time.
"""

from __future__ import annotations

import argparse
import difflib
import json
from decimal import Decimal
from typing import Any

from otel_margin.call import Usage
from otel_margin.cli import CommandError
from otel_margin.display import rich_text
from otel_margin.policy import Policy, PolicyError, load_policy
from otel_margin.prices import PriceCatalog, ResolvedPrice, UnitPrice, catalog_provider_id, provider_names

SAMPLE_USAGE = Usage(input_tokens=1000, output_tokens=1000)

_EPILOG = """\
examples:
  otel-margin prices gpt-4o-mini-2024-07-18
  otel-margin prices claude-3-5-sonnet-20241022 --provider anthropic
  otel-margin prices ft:gpt-4o-mini:acme:2024 --policy otel-margin.toml --json

Prices are USD per million tokens. The policy file (--policy, else $OTEL_MARGIN_POLICY,
else ./otel-margin.toml) overrides the genai-prices catalog; see docs/policy.md.
"""


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the ``prices`` sub-command."""
    parser = subparsers.add_parser(
        "prices",
        help="show what a model costs per million tokens and where the price comes from",
        description="Show what MODEL costs per million tokens for each component (uncached "
        "input, cache read, cache write, output), what it is priced as, where the price "
        "comes from, the discounts applied, and the cost of 1,000 input + 1,000 output tokens.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("model", metavar="MODEL", help="model id as sent to or returned by the provider")
    parser.add_argument(
        "--provider",
        metavar="P",
        help="provider (gen_ai.provider.name, e.g. openai, anthropic); default: guessed from MODEL",
    )
    parser.add_argument("--policy", metavar="FILE", help="policy file (default: $OTEL_MARGIN_POLICY or ./otel-margin.toml)")
    parser.add_argument("--json", action="store_true", help="print machine-readable JSON instead of tables")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Print the price of ``args.model``; unknown models are a :class:`CommandError`."""
    try:
        policy = load_policy(args.policy)
    except PolicyError as error:
        raise CommandError(str(error)) from None
    catalog = PriceCatalog(policy, log_unpriced=False)
    if args.provider and not _known_provider(policy, args.provider):
        raise CommandError(_unknown_provider_message(policy, args.provider))
    provider = args.provider or _guess_provider(catalog, args.model)
    resolved = catalog.lookup(provider, args.model) if provider else None
    if resolved is None:
        raise CommandError(_unknown_model_message(catalog, args.model, provider))
    sample = catalog.price(provider, args.model, SAMPLE_USAGE, duration_s=None)
    report = _report(args.model, provider, resolved, sample.total)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        _print_tables(report, resolved)
    return 0


def _report(model: str, provider: str, resolved: ResolvedPrice, sample_total: Decimal | None) -> dict[str, Any]:
    components = {
        "uncached_input": _unit_json(resolved.input),
        "cache_read": _unit_json(resolved.cache_read or resolved.input),
        "cache_write": _unit_json(resolved.cache_write or resolved.input),
        "output": _unit_json(resolved.output),
    }
    if resolved.cache_write_1h is not None:
        components["cache_write_1h"] = _unit_json(resolved.cache_write_1h)
    if resolved.reasoning is not None:
        components["reasoning"] = _unit_json(resolved.reasoning)
    report: dict[str, Any] = {
        "model": model,
        "provider": provider,
        "priced_as": resolved.priced_as,
        "matched_by": resolved.matched_by,
        "source": resolved.source,
        "origin": resolved.origin,
        "price_version": resolved.version,
        "per_mtok_usd": components,
        "cache_read_falls_back_to_input": resolved.cache_read is None,
        "cache_write_falls_back_to_input": resolved.cache_write is None,
        "discount_percent": str(resolved.discount.percent) if resolved.discount else None,
        "request_usd": str(resolved.request_usd) if resolved.request_usd is not None else None,
        "gpu_second_usd": str(resolved.gpu_second_usd) if resolved.gpu_second_usd is not None else None,
        "gpus": resolved.gpus if resolved.gpu_second_usd is not None else None,
        "sample": {
            "input_tokens": SAMPLE_USAGE.input_tokens,
            "output_tokens": SAMPLE_USAGE.output_tokens,
            "total_usd": str(sample_total) if sample_total is not None else None,
        },
    }
    return report


def _unit_json(unit: UnitPrice | None) -> dict[str, Any] | None:
    if unit is None:
        return None
    return {
        "base": str(unit.base),
        "tiers": [{"above_input_tokens": t.start, "per_mtok": str(t.per_mtok)} for t in unit.tiers],
    }


def _print_tables(report: dict[str, Any], resolved: ResolvedPrice) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False)
    # Model ids, providers and policy paths come from outside: shown printable, never as markup.
    about = Table(title=rich_text(f"{report['model']} at {report['provider']}"), show_header=False,
                  title_justify="left")
    about.add_column(style="bold")
    about.add_column()
    priced_as = resolved.priced_as
    if resolved.matched_by != "exact":
        priced_as = f"{report['model']} → {resolved.priced_as} ({resolved.matched_by})"
    about.add_row("priced as", rich_text(priced_as))
    about.add_row("source", rich_text(f"{resolved.source}: {resolved.origin}"))
    about.add_row("price version", resolved.version)
    about.add_row("discount", f"{resolved.discount.percent}% off catalog" if resolved.discount else "none")
    console.print(about)

    units = Table(title="Unit prices, USD per million tokens unless noted", title_justify="left")
    units.add_column("component")
    units.add_column("price", justify="right")
    units.add_column("notes")
    rows = [
        ("uncached input", resolved.input, ""),
        ("cache read", resolved.cache_read or resolved.input,
         "billed at the input price (no cache-read price)" if resolved.cache_read is None else ""),
        ("cache write", resolved.cache_write or resolved.input,
         "billed at the input price (no cache-write price)" if resolved.cache_write is None else ""),
        *([("cache write (1 hour)", resolved.cache_write_1h, "Anthropic's ttl: \"1h\" writes")]
          if resolved.cache_write_1h is not None else []),
        ("output (incl. reasoning)" if resolved.reasoning is None else "output", resolved.output, ""),
    ]
    if resolved.reasoning is not None:
        rows.append(("reasoning", resolved.reasoning, ""))
    if resolved.gpu_second_usd is not None:
        rows = []  # priced by GPU time, not by token
    for name, unit, note in rows:
        units.add_row(name, _money(unit.base) if unit else "-", _tier_note(unit, note))
    if resolved.request_usd is not None:
        units.add_row("per request", _money(resolved.request_usd), "fixed fee per call (cost 'other')")
    if resolved.gpu_second_usd is not None:
        units.add_row(
            "GPU time", _money(resolved.gpu_second_usd),
            f"per GPU-second × {resolved.gpus} GPU(s) × call duration (cost 'other')",
        )
    console.print(units)

    total = report["sample"]["total_usd"]
    if total is None:
        console.print("1,000 input + 1,000 output tokens: needs the call's duration (priced per GPU-second)")
    else:
        console.print(f"1,000 input + 1,000 output tokens cost [bold]{_money(Decimal(total))}[/bold]")


def _tier_note(unit: UnitPrice | None, note: str) -> str:
    if unit is None or not unit.tiers:
        return note
    tiers = "; ".join(f"{_money(t.per_mtok)} above {t.start:,} input tokens" for t in unit.tiers)
    return f"{note}; {tiers}" if note else tiers


def _money(amount: Decimal) -> str:
    return f"${amount.normalize():f}" if amount else "$0"


def _guess_provider(catalog: PriceCatalog, model: str) -> str | None:
    """The policy entry's provider, else the catalog provider whose model patterns match, else
    a provider that lists the model (``text-embedding-3-small`` is no ``gpt-*``, yet OpenAI's)."""
    key = model.strip().lower()
    for entry in (catalog.policy.self_hosted.get(key), catalog.policy.models.get(key)):
        if entry is not None:
            return entry.provider or "policy"
    from genai_prices.data_snapshot import get_snapshot

    try:
        return get_snapshot().find_provider(key, None, None).id
    except LookupError:
        listing = _providers_listing(key)
        return listing[0] if listing else None


def _providers_listing(model: str) -> list[str]:
    """Catalog providers that list ``model``: the model's makers (providers that claim model
    names, such as OpenAI's ``gpt-*``) first, then resellers, each group in catalog order."""
    from genai_prices.data_snapshot import get_snapshot

    key = model.strip().lower()
    found = [p for p in get_snapshot().providers if any(m.is_match(key) for m in p.models)]
    return [p.id for p in sorted(found, key=lambda p: p.model_match is None)]


def _known_provider(policy: Policy, provider: str) -> bool:
    return catalog_provider_id(provider) is not None or provider.strip().lower() in _policy_providers(policy)


def _policy_providers(policy: Policy) -> set[str]:
    entries = (*policy.models.values(), *policy.self_hosted.values(), *policy.hosts.values())
    return {entry.provider.lower() for entry in entries if entry.provider}


def _unknown_provider_message(policy: Policy, provider: str) -> str:
    names = sorted(set(provider_names()) | _policy_providers(policy))
    hints = difflib.get_close_matches(provider.strip().lower(), names, n=3, cutoff=0.6)
    fix = ("; did you mean " + ", ".join(f"'{h}'" for h in hints) + "?") if hints else (
        f". Known providers: {', '.join(names)}.")
    return (f"unknown provider '{provider}': neither the price catalog nor {_policy_name(policy)} names it{fix} "
            "Or leave out --provider to guess it from the model.")


def _unknown_model_message(catalog: PriceCatalog, model: str, provider: str | None) -> str:
    from genai_prices.data_snapshot import find_provider_by_id, get_snapshot

    listing, here = _providers_listing(model), catalog_provider_id(provider or "")
    fix = "To price it, add it to the policy file under [prices.models] (docs/policy.md)."
    if here is not None and here in listing:  # listed, but by the minute, image or character
        return (f"the catalog lists '{model}' at '{provider}' without a per-token price "
                f"(what calls are priced by). {fix}")
    elsewhere = [p for p in listing if p != here]
    where = f"for provider '{provider}'" if provider else "(no provider matches it; pass --provider)"
    message = f"unknown model '{model}' {where} in the catalog or {_policy_name(catalog.policy)}"
    if elsewhere:  # the id is right, the provider is not: say where it is priced
        listed = ", ".join(elsewhere[:5]) + (", ..." if len(elsewhere) > 5 else "")
        return f"{message}; the catalog prices it at {listed}: pass --provider {elsewhere[0]}."
    providers = get_snapshot().providers
    found = find_provider_by_id(providers, catalog_provider_id(provider) or provider) if provider else None
    pool = [m.id for m in found.models] if found is not None else [m.id for p in providers for m in p.models]
    pool += [entry.model for entry in (*catalog.policy.models.values(), *catalog.policy.self_hosted.values())]
    typed = model.strip().lower()
    hints = [h for h in difflib.get_close_matches(typed, sorted(set(pool)), n=4, cutoff=0.6) if h.lower() != typed]
    if hints:
        return f"{message}; did you mean " + ", ".join(f"'{h}'" for h in hints[:3]) + f"? {fix}"
    return f"{message}. {fix}"


def _policy_name(policy: Policy) -> str:
    return f"policy file {policy.source}" if policy.source else "policy file (none loaded)"
