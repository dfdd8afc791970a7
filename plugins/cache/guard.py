"""The semantic cache's guard: a near neighbour is served only when the facts of both requests agree.

Embedding similarity alone is unsafe: "refund order 1182" and "refund order 1183", "cancel my
subscription" and "don't cancel my subscription", "all invoices" and "only unpaid invoices"
score higher than many true paraphrases. So a semantic hit also needs every **fact** of the new
request to equal the stored request's:

- numbers (digits, decimals, and the number words *one* … *twenty*, *a dozen*), with amounts'
  currency signs and units kept on them (``$40`` ≠ ``€40``, ``40 GB`` ≠ ``40 MB``);
- dates and times: month and day names, ``2026-03-01``, ``3/4``, ``10:30``, *today*,
  *tomorrow*, *yesterday*, *next week*, *last month* …;
- negations (*not*, *no*, *never*, *n't*, *without*, *none*, *nothing*, *neither*, *nor*);
- names and identifiers: capitalised words not at a sentence's start, and any token mixing
  letters with digits or ``-``/``_``/``#`` (``INV-2041``, ``user_17``, ``#5521``);
- scope and direction words (*all*, *only*, *except*, *every*, *any*, *each*, *both*, *either*,
  *latest*, *oldest*, *before*, *after*, *more*, *less*, *increase*, *decrease*, *minimum*,
  *maximum*, *above*, *below*, *refund*, *charge*, *approve*, *reject* …) and the person a
  request is about (*I/my*, *we/our*, *you*, *he*, *she*, *they*);
- quoted strings, verbatim.

The facts are compared as multisets, so a paraphrase that moves them around still matches, and
a request that adds or drops one does not. The guard is deliberately strict: it refuses some
true paraphrases (*five* vs *5* match; *5* vs *five items or so* does not) rather than serve a
wrong answer.
"""

from __future__ import annotations

import re
from collections import Counter

NUMBER_WORDS = {
    "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17",
    "eighteen": "18", "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50",
    "hundred": "100", "thousand": "1000", "million": "1000000", "dozen": "12", "half": "0.5",
    "once": "1", "twice": "2", "single": "1", "double": "2", "triple": "3",
    "first": "1st", "second": "2nd", "third": "3rd", "fourth": "4th", "fifth": "5th",
}
DATE_WORDS = frozenset(
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec "
    "monday tuesday wednesday thursday friday saturday sunday "
    "today tomorrow yesterday tonight morning afternoon evening night weekend week month year quarter "
    "daily weekly monthly yearly annual annually hourly now next last previous past upcoming ago q1 q2 q3 q4".split()
)
NEGATIONS = frozenset(
    "not no never none nothing nobody nowhere neither nor without cannot cant dont doesnt didnt isnt "
    "arent wasnt werent wont wouldnt shouldnt couldnt hasnt havent hadnt mustnt stop avoid exclude "
    "excluding unless".split()
)
SCOPE_WORDS = frozenset(
    "all only except every any each both either some most many few several entire whole just "
    "latest oldest newest earliest first last before after since until more less fewer most least "
    "increase decrease raise lower upgrade downgrade add remove cancel enable disable open close "
    "above below minimum maximum min max between within outside inside or plus minus per "
    "partial full refund charge buy sell debit credit cheaper cheapest expensive fastest slowest "
    "higher highest lowest lock unlock include including public private "
    "delete archive restore send receive import export encrypt decrypt allow deny approve reject "
    "accept decline".split()
)
"""Words that change what a request asks for: a word in one request and not the other refuses the hit."""
PRONOUNS = {
    **dict.fromkeys("i me my mine myself".split(), "1"), **dict.fromkeys("we us our ours".split(), "1pl"),
    **dict.fromkeys("you your yours yourself".split(), "2"), **dict.fromkeys("he him his himself".split(), "3m"),
    **dict.fromkeys("she her hers herself".split(), "3f"), **dict.fromkeys("they them their theirs".split(), "3pl"),
}
"""Whom a request is about: compared by person, present or not (``my`` and ``I`` are one person)."""
SET_KINDS = ("s:", "d:", "p:")
"""Facts compared by presence, not count: a paraphrase may say "all" or "today" twice."""

_TOKEN = re.compile(
    r"""(?P<quote>"[^"]{1,80}"|'[^']{2,80}'(?=\W|$))"""
    r"|(?P<money>[$€£¥₹]\s?\d[\d,]*(?:\.\d+)?[kKmM]?)"
    r"|(?P<date>\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}(?:/\d{2,4})?|\d{1,2}:\d{2}(?:\s?[ap]m)?)"
    r"|(?P<number>\d[\d,]*(?:\.\d+)?)(?P<unit>\s?(?:%|percent|k|kb|mb|gb|tb|ms|s|sec|min|h|hrs?|hours?|days?|weeks?|"
    r"months?|years?|mg|ml|kg|g|lbs?|km|mi|miles?|usd|eur|gbp|dollars?|euros?|pounds?|am|pm|st|nd|rd|th|x)\b)?"
    r"|(?P<word>[A-Za-z][A-Za-z0-9_#'’\-]*)"
    r"|(?P<sentence>[.!?\n]+)",
    re.UNICODE,
)


def facts(text: str) -> Counter[str]:
    """The facts of a request's text, as a multiset of tagged strings."""
    found: Counter[str] = Counter()
    sentence_start = True
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        value = match.group(0)
        if kind == "sentence":
            sentence_start = True
            continue
        if kind == "quote":
            found["q:" + value[1:-1].strip().lower()] += 1
        elif kind == "money":
            found["$:" + re.sub(r"[\s,]", "", value).lower()] += 1
        elif kind == "date":
            found["d:" + value.replace(" ", "").lower()] += 1
        elif kind in ("number", "unit"):
            number = match.group("number").replace(",", "")
            unit = (match.group("unit") or "").strip().lower().rstrip("s") or ""
            found[f"n:{_canonical_number(number)}{unit}"] += 1
        elif kind == "word":
            _word(value, sentence_start, found)
        sentence_start = False
    for fact in found:
        if fact.startswith(SET_KINDS):
            found[fact] = 1
    return found


def _canonical_number(number: str) -> str:
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return number.lstrip("0") or "0"


def _word(word: str, sentence_start: bool, found: Counter[str]) -> None:
    lower = word.lower().replace("’", "'")
    bare = lower.replace("'", "")
    if lower.endswith("n't") or bare in NEGATIONS:
        found["not"] += 1
        return
    if bare in NUMBER_WORDS:
        found["n:" + NUMBER_WORDS[bare]] += 1
        return
    if bare in DATE_WORDS:
        found["d:" + bare] += 1
        return
    if bare in PRONOUNS:
        found["p:" + PRONOUNS[bare]] += 1
        return
    if bare in SCOPE_WORDS:
        found["s:" + bare] += 1
        return
    if any(ch.isdigit() for ch in word) or any(ch in "_#" for ch in word) or (
        "-" in word and any(ch.isupper() for ch in word)
    ):
        found["id:" + lower] += 1
        return
    if word[0].isupper() and (not sentence_start or sum(ch.isupper() for ch in word) > 1) and word != "I":
        found["e:" + lower] += 1


def differences(new: str, stored: str) -> list[str]:
    """The facts in one text and not the other (empty: the guard allows the hit)."""
    a, b = facts(new), facts(stored)
    return sorted(((a - b) + (b - a)).elements())


def allows(new: str, stored: str) -> bool:
    """Whether a semantic hit of ``stored`` may answer ``new``: their facts are the same."""
    return facts(new) == facts(stored)
