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
- units, after a number or alone (``15 vacation days`` is ``15 days of vacation``);
- scope and direction words (*all*/*every*/*each*, *only*, *except*, *everyone*, *latest*,
  *before*, *after*, *under*/*below*/*less*, *over*/*above*/*more*, *send*/*forward*,
  *delete*/*remove*, *add*/*apply*, *cancel*/*end*, *refund*, *charge*, *approve*, *reject* …),
  synonyms compared as one. Pronouns are not compared (*my* password and *your* password
  are served the same answer);
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
    "zero": "0", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
    "seven": "7", "eight": "8", "nine": "9", "ten": "10", "eleven": "11", "twelve": "12",
    "thirteen": "13", "fourteen": "14", "fifteen": "15", "sixteen": "16", "seventeen": "17",
    "eighteen": "18", "nineteen": "19", "twenty": "20", "thirty": "30", "forty": "40", "fifty": "50",
    "hundred": "100", "thousand": "1000", "million": "1000000", "dozen": "12", "half": "0.5",
    "twice": "2", "double": "2", "triple": "3",
    "first": "1st", "second": "2nd", "third": "3rd", "fourth": "4th", "fifth": "5th",
}
DATE_WORDS = frozenset(
    "january february march april may june july august september october november december "
    "jan feb mar apr jun jul aug sep sept oct nov dec "
    "monday tuesday wednesday thursday friday saturday sunday "
    "today tomorrow yesterday tonight morning afternoon evening weekend "
    "daily weekly monthly yearly annual annually hourly next last previous past upcoming ago q1 q2 q3 q4".split()
)
NEGATIONS = frozenset(
    "not no never none nothing nobody nowhere neither nor without cannot cant dont doesnt didnt isnt "
    "arent wasnt werent wont wouldnt shouldnt couldnt hasnt havent hadnt mustnt stop avoid exclude "
    "excluding unless".split()
)
SCOPE_WORDS = frozenset(
    "only except some most many few several just everyone everybody anyone anybody someone somebody "
    "latest oldest newest earliest before after since until least between outside inside or "
    "plus minus partial full refund charge buy sell debit credit cheapest expensive fastest slowest "
    "highest lowest lock unlock include including archive restore receive import export encrypt "
    "decrypt allow deny approve reject accept decline upgrade downgrade enable disable increase decrease".split()
)
"""Words that change what a request asks for: a word in one request and not the other refuses the hit."""
SYNONYMS = {
    **dict.fromkeys("all every each entire whole".split(), "all"),
    **dict.fromkeys("under below less fewer lower cheaper within beneath smaller".split(), "less"),
    **dict.fromkeys("over above more greater higher exceeding larger bigger".split(), "more"),
    **dict.fromkeys("send forward email mail".split(), "send"),
    **dict.fromkeys("delete remove erase drop".split(), "remove"),
    **dict.fromkeys("add apply use".split(), "add"),
    **dict.fromkeys("cancel end terminate".split(), "cancel"),
    **dict.fromkeys("min minimum".split(), "min"),
    **dict.fromkeys("max maximum".split(), "max"),
}
"""Words that say the same thing, compared as one (``under $50`` is ``below $50``)."""
UNITS = {
    **dict.fromkeys(("day", "days"), "day"), **dict.fromkeys(("week", "weeks"), "week"),
    **dict.fromkeys(("month", "months"), "month"), **dict.fromkeys(("year", "years", "yr", "yrs"), "year"),
    **dict.fromkeys(("h", "hr", "hrs", "hour", "hours"), "hour"), **dict.fromkeys(("night", "nights"), "night"),
    **dict.fromkeys(("min", "mins", "minute", "minutes"), "minute"), **dict.fromkeys(("quarter", "quarters"), "quarter"),
    **dict.fromkeys(("%", "percent", "pct"), "%"), **dict.fromkeys(("lb", "lbs"), "lb"), **dict.fromkeys(("mile", "miles"), "mile"),
    **{w: w for w in ("kb", "mb", "gb", "tb", "ms", "mg", "ml", "kg", "g", "km", "mi", "usd", "eur", "gbp", "x")},
}
"""Units, after a number or alone (``15 vacation days`` is ``15 days of vacation``): compared by presence."""
SET_KINDS = ("s:", "d:", "u:")
"""Facts compared by presence, not count: a paraphrase may say "all" or "today" twice."""

_TOKEN = re.compile(
    r"""(?P<quote>"[^"]{1,80}"|'[^']{2,80}'(?=\W|$))"""
    r"|(?P<money>[$€£¥₹]\s?\d[\d,]*(?:\.\d+)?[kKmM]?)"
    r"|(?P<date>\d{4}-\d{2}-\d{2}|\d{1,2}/\d{1,2}(?:/\d{2,4})?|\d{1,2}:\d{2}(?:\s?[ap]m)?)"
    r"|(?P<number>\d[\d,]*(?:\.\d+)?)(?P<unit>[\s-]?(?:%|[a-z]+)\b)?"
    r"|(?P<word>[A-Za-z][A-Za-z0-9_#'’\-]*)"
    r"|(?P<sentence>(?<!\bDr)(?<!\bMr)(?<!\bMs)(?<!\bMrs)(?<!\bSt)(?<!\bProf)(?<!\bNo)[.!?\n]+)",
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
            found["n:" + _canonical_number(match.group("number").replace(",", ""))] += 1
            unit = (match.group("unit") or "").strip(" -").lower()
            if unit in UNITS:
                found["u:" + UNITS[unit]] += 1
            elif unit:  # a word after the number, not a unit: a word like any other
                _word(unit, False, found)
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
    if lower.endswith("'s"):
        word, lower = word[:-2], lower[:-2]
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
    if bare in UNITS and len(bare) > 2:
        found["u:" + UNITS[bare]] += 1
        return
    if bare in SYNONYMS:
        found["s:" + SYNONYMS[bare]] += 1
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
