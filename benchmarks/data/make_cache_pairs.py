"""Write ``cache_pairs.jsonl``: labelled request pairs for ``benchmarks/cache_quality.py``.

Each line is ``{"domain", "kind", "stored", "asked", "hit"}``: ``hit`` is whether the answer
stored for ``stored`` may answer ``asked``. Should-hit pairs (``kind = "paraphrase"``) reword a
request keeping every fact; should-miss traps change exactly one fact of a near-identical
request: ``number``, ``date``, ``amount``, ``entity``, ``negation`` or ``scope``. Templates span
support, finance, code, travel, medical administration, HR and retail. Deterministic (seeded):

    python benchmarks/data/make_cache_pairs.py   # rewrites benchmarks/data/cache_pairs.jsonl
"""

from __future__ import annotations

import json
import random
from pathlib import Path

# domain, slots, paraphrase forms (the first is the stored one), traps: {kind: (form, slot override)}
# A trap form "=" means the stored form with one slot changed; other strings are their own forms.
TEMPLATES = [
    ("support", {"n": ["1182", "20417", "5521", "8830"]},
     ["What is the status of order {n}?", "Can you tell me where order {n} is?", "Where is my order {n} right now?",
      "Give me an update on order {n}."],
     {"number": ("=", "n"), "negation": ("Why is order {n} not shipped?", None)}),
    ("support", {"p": ["password", "PIN", "security question"]},
     ["How do I reset my {p}?", "I forgot my {p}, how can I change it?", "What are the steps to reset my {p}?",
      "Help me reset my {p}."],
     {"negation": ("How do I stop a reset of my {p}?", None), "scope": ("How do I reset everyone's {p}?", None)}),
    ("support", {"plan": ["Pro", "Team", "Enterprise"]},
     ["Cancel my {plan} subscription.", "Please cancel my {plan} subscription.", "I want to cancel my {plan} subscription.",
      "End my {plan} subscription, please."],
     {"negation": ("Don't cancel my {plan} subscription.", None), "entity": ("=", "plan")}),
    ("support", {"d": ["3", "5", "10"]},
     ["Can I return an item after {d} days?", "Is a return possible {d} days after delivery?",
      "Am I allowed to return something after {d} days?"],
     {"number": ("=", "d"), "negation": ("Can I return an item without a receipt after {d} days?", None)}),
    ("finance", {"a": ["$40", "$250", "$1,200"], "acct": ["savings", "checking"]},
     ["Transfer {a} to my {acct} account.", "Move {a} into my {acct} account.", "Please send {a} to my {acct} account.",
      "I'd like to transfer {a} to my {acct} account."],
     {"amount": ("=", "a")}),
    ("finance", {"m": ["March", "June", "October"], "y": ["2025", "2026"]},
     ["Show my card spending for {m} {y}.", "What did I spend on my card in {m} {y}?",
      "List my card expenses for {m} {y}.", "How much did I spend with my card in {m} {y}?"],
     {"date": ("=", "m"), "number": ("=", "y")}),
    ("finance", {"co": ["Acme", "Globex", "Initech", "Umbrella"]},
     ["List all invoices for {co}.", "Show every invoice for {co}.", "Give me all of {co}'s invoices.",
      "Which invoices does {co} have? Show all of them."],
     {"scope": ("List only the unpaid invoices for {co}.", None), "entity": ("=", "co")}),
    ("finance", {"r": ["4.5%", "5%", "6.25%"], "t": ["10", "15", "30"]},
     ["What is the monthly payment on a {t}-year loan at {r}?", "Compute the monthly payment for a {t} year loan at {r}.",
      "How much is the monthly payment for a {t}-year loan with {r} interest?"],
     {"number": ("=", "t"), "amount": ("=", "r")}),
    ("code", {"lang": ["Python", "JavaScript", "Go", "Rust"]},
     ["How do I read a file line by line in {lang}?", "What's the way to read a file line by line in {lang}?",
      "Show me how to read a file one line at a time in {lang}.", "In {lang}, how can I read a file line by line?"],
     {"entity": ("=", "lang"), "negation": ("How do I read a file in {lang} without reading it line by line?", None)}),
    ("code", {"v": ["3.10", "3.11", "3.12"]},
     ["What changed in Python {v}?", "What is new in Python {v}?", "List the changes in Python {v}.",
      "Which features arrived in Python {v}?"],
     {"number": ("=", "v"), "scope": ("What changed in Python {v} except typing?", None)}),
    ("code", {"n": ["404", "500", "503"]},
     ["Why does my API return HTTP {n}?", "My API responds with HTTP {n}, why?", "What causes my API to return an HTTP {n}?"],
     {"number": ("=", "n"), "negation": ("Why does my API never return HTTP {n}?", None)}),
    ("code", {"t": ["users", "orders", "events"]},
     ["Write SQL to delete all rows from the {t} table.", "Give me the SQL that deletes all rows from the {t} table.",
      "SQL to remove all rows from the {t} table, please."],
     {"scope": ("Write SQL to delete only the rows from the {t} table older than a year.", None),
      "negation": ("Write SQL to delete all rows from the {t} table except none of the recent ones.", None)}),
    ("travel", {"src": ["Paris", "Berlin", "Madrid"], "dst": ["London", "Rome", "Lisbon"]},
     ["Book a flight from {src} to {dst}.", "I need a flight from {src} to {dst}.", "Please book me a flight from {src} to {dst}.",
      "Find me a flight from {src} to {dst} and book it."],
     {"entity": ("=", "dst")}),
    ("travel", {"n": ["2", "3", "4"], "day": ["Friday", "Saturday", "Monday"]},
     ["Reserve a table for {n} on {day}.", "Book a table for {n} people on {day}.", "Can you reserve a table for {n} this {day}?",
      "I'd like a table for {n} on {day}."],
     {"number": ("=", "n"), "date": ("=", "day")}),
    ("travel", {"city": ["Tokyo", "Oslo", "Cairo"], "w": ["January", "July"]},
     ["What is the weather like in {city} in {w}?", "How is the weather in {city} in {w}?",
      "What weather should I expect in {city} in {w}?"],
     {"entity": ("=", "city"), "date": ("=", "w")}),
    ("travel", {"h": ["Hilton", "Marriott", "Ibis"], "n": ["2", "3", "5"]},
     ["Cancel my {h} booking for {n} nights.", "Please cancel the {n}-night {h} booking.", "I want to cancel my {h} reservation for {n} nights."],
     {"number": ("=", "n"), "negation": ("Don't cancel my {h} booking for {n} nights.", None)}),
    ("medical-admin", {"doc": ["Dr. Patel", "Dr. Chen", "Dr. Garcia"], "day": ["Tuesday", "Thursday"]},
     ["Book an appointment with {doc} on {day}.", "I need an appointment with {doc} on {day}.",
      "Schedule me with {doc} on {day}.", "Can I see {doc} on {day}?"],
     {"entity": ("=", "doc"), "date": ("=", "day"), "negation": ("Cancel my appointment with {doc} on {day}.", None)}),
    ("medical-admin", {"mg": ["200", "400", "600"], "h": ["6", "8"]},
     ["Is {mg} mg of ibuprofen every {h} hours within the dosing limit?",
      "Does {mg} mg ibuprofen every {h} hours stay under the dosing limit?",
      "Is taking {mg} mg of ibuprofen every {h} hours within the limit?"],
     {"number": ("=", "mg"), "amount": ("=", "h")}),
    ("medical-admin", {"id": ["PT-20417", "PT-88310", "PT-11902"]},
     ["Send the lab results of patient {id} to their GP.", "Forward patient {id}'s lab results to their GP.",
      "Please send the GP the lab results for patient {id}."],
     {"entity": ("=", "id"), "negation": ("Don't send the lab results of patient {id} to their GP.", None)}),
    ("medical-admin", {"ins": ["Aetna", "Cigna", "Allianz"]},
     ["Does {ins} cover physiotherapy?", "Is physiotherapy covered by {ins}?", "Will {ins} pay for physiotherapy?"],
     {"entity": ("=", "ins"), "scope": ("Does {ins} cover only part of physiotherapy?", None)}),
    ("hr", {"n": ["10", "15", "25"]},
     ["How do I request {n} days of vacation?", "What's the process to ask for {n} vacation days?",
      "How can I apply for {n} days of vacation?"],
     {"number": ("=", "n"), "negation": ("How do I request {n} days of unpaid leave without vacation?", None)}),
    ("hr", {"name": ["Alice Martin", "Bob Singh", "Carla Rossi"]},
     ["Send the onboarding checklist to {name}.", "Email {name} the onboarding checklist.", "Please forward the onboarding checklist to {name}."],
     {"entity": ("=", "name"), "scope": ("Send the onboarding checklist to everyone except {name}.", None)}),
    ("hr", {"dt": ["2026-03-01", "2026-04-15", "2026-06-30"]},
     ["What holidays are there before {dt}?", "Which public holidays fall before {dt}?", "List the holidays before {dt}."],
     {"date": ("=", "dt"), "scope": ("What holidays are there after {dt}?", None)}),
    ("retail", {"size": ["M", "L", "XL"], "col": ["red", "blue", "black"]},
     ["Do you have this jacket in size {size}?", "Is this jacket available in size {size}?", "Can I get this jacket in a size {size}?"],
     {"entity": ("=", "size"), "negation": ("Do you no longer have this jacket in size {size}?", None)}),
    ("retail", {"a": ["$50", "$75", "$100"]},
     ["Show me running shoes under {a}.", "Which running shoes cost less than {a}?", "List running shoes below {a}.",
      "Find running shoes for under {a}."],
     {"amount": ("=", "a"), "scope": ("Show me running shoes over {a}.", None)}),
    ("retail", {"code": ["SPRING10", "WELCOME5", "VIP20"]},
     ["Apply the discount code {code} to my cart.", "Use code {code} on my cart.", "Please add discount code {code} to my cart."],
     {"entity": ("=", "code"), "negation": ("Remove the discount code {code} from my cart.", None)}),
]


def build(seed: int = 19) -> list[dict]:
    rng = random.Random(seed)
    rows = []
    for domain, slots, forms, traps in TEMPLATES:
        for _ in range(8):
            values = {name: rng.choice(options) for name, options in slots.items()}
            stored = forms[0].format(**values)
            others = forms[1:]
            for form in others:
                rows.append({"domain": domain, "kind": "paraphrase", "stored": stored, "asked": form.format(**values), "hit": True})
            for kind, (form, slot) in traps.items():
                if slot is not None:
                    changed = dict(values, **{slot: rng.choice([v for v in slots[slot] if v != values[slot]])})
                    # the trap is asked in the stored wording (the most similar) and in a paraphrase
                    rows.append({"domain": domain, "kind": kind, "stored": stored, "asked": forms[0].format(**changed), "hit": False})
                    rows.append({"domain": domain, "kind": kind, "stored": stored,
                                 "asked": rng.choice(others).format(**changed), "hit": False})
                else:
                    rows.append({"domain": domain, "kind": kind, "stored": stored, "asked": form.format(**values), "hit": False})
    unique = {json.dumps(r, sort_keys=True): r for r in rows if r["stored"] != r["asked"]}
    return list(unique.values())


if __name__ == "__main__":
    out = Path(__file__).with_name("cache_pairs.jsonl")
    rows = build()
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    hits = sum(r["hit"] for r in rows)
    print(f"{out}: {hits} should-hit pairs, {len(rows) - hits} should-miss traps")
