"""Privacy floors. `--redact-pii` replaces emails, URLs, card numbers and phone numbers with
placeholders; `--k-anonymity K` withholds what describes a segment of fewer than K users.

Redaction runs on the loaded table, before documents are built, so no later stage (the LLM,
tags, evidence quotes, segment profiles, output files) can see a redacted span. It errs on
the side of redacting: a number shaped like a phone number is replaced even if it is not one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tagger.schemas import Segment
from tagger.stages.data import Columns, clean_text

PLACEHOLDERS = {"url": "[URL]", "email": "[EMAIL]", "card": "[CARD]", "phone": "[PHONE]"}

_URL = re.compile(r"\b(?:https?://|ftp://|www\.)[^\s<>\"']+"
                  r"|\b[\w-]+(?:\.[\w-]+)*\.(?:com|org|net|io|co|de|uk|cn|ru|info|biz)/[^\s<>\"']*", re.IGNORECASE)
_EMAIL = re.compile(r"[\w.+%-]+@[\w-]+(?:\.[\w-]+)+")
# 13-19 digits, optionally grouped by single spaces or dashes (how cards are written).
_CARD = re.compile(r"(?<![\w+])\d(?:[ -]?\d){12,18}(?![\w])")
# Optional +country, optional (area), then digit groups split by space, dot or dash.
_PHONE = re.compile(r"(?<![\w+])(?:\+\d{1,3}[ .-]?)?(?:\(\d{1,5}\)[ .-]?)"
                    r"?(?:\d{10,15}|\d{2,5}(?:[ .-]\d{2,5}){0,4})(?![\w])")


@dataclass
class RedactionStats:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PLACEHOLDERS, 0))


def luhn_valid(digits: str) -> bool:
    """The checksum every payment card number satisfies (and ~90 % of random numbers fail)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _is_phone(span: str) -> bool:
    digits = re.sub(r"\D", "", span)
    if not 7 <= len(digits) <= 15:
        return False
    if span.startswith("+") or "(" in span:
        return True
    groups = re.split(r"[ .-]", span)
    # "2019-05-12" or "1.234.567" are dates and amounts; phone numbers end in 3+ digits.
    if len(groups) > 1 and (len(groups[-1]) < 3 or re.fullmatch(r"(19|20)\d\d", groups[0])):
        return False
    return len(groups) > 1 or len(digits) >= 10


def redact_text(text: str, stats: RedactionStats | None = None) -> str:
    """`text` with each email, URL, Luhn-valid card number and phone number replaced."""
    if not text:
        return text
    stats = stats or RedactionStats()

    def sub(kind: str, pattern: re.Pattern, value: str, keep=lambda span: True) -> str:
        def replace(match: re.Match) -> str:
            if not keep(match.group(0)):
                return match.group(0)
            stats.counts[kind] += 1
            return PLACEHOLDERS[kind]
        return pattern.sub(replace, value)

    text = sub("email", _EMAIL, text)  # before URLs: "bob@shop.com/x" is an email
    text = sub("url", _URL, text)
    text = sub("card", _CARD, text, lambda span: luhn_valid(re.sub(r"\D", "", span)))
    return sub("phone", _PHONE, text, _is_phone)


def redact_frame(frame: pd.DataFrame, columns: Columns, stats: RedactionStats | None = None) -> pd.DataFrame:
    """A copy of `frame` whose text (and item) column is cleaned and redacted.

    Cleaning first means HTML-escaped addresses (`bob&#64;mail.com`) are caught too. User ids
    are left as they are: they are the key callers join results back on.
    """
    stats = stats or RedactionStats()
    out = frame.copy()
    for name in (columns.text, columns.item):
        if name and name in out.columns:
            out[name] = out[name].map(lambda value: redact_text(clean_text(value), stats))
    return out


_WORDS = re.compile(r"\w+", re.UNICODE)


def withhold_small_segments(segments: list[Segment], k: int) -> list[Segment]:
    """`segments` with each one of fewer than `k` users reduced to its id and size: its name,
    description, tags, items and evidence quotes could single out its few members."""
    return [s if s.size >= k else s.model_copy(update={
        "name": f"segment {s.segment_id} (withheld)", "description": f"Fewer than {k} users; not described.",
        "top_tags": [], "top_items": [], "evidence": [], "named_by": "withheld"}) for s in segments]


def exclude_sensitive(users: pd.DataFrame, segments: list[Segment] | pd.DataFrame, mode: str) -> pd.DataFrame:
    """With `mode` "exclude" (--sensitive exclude), the users whose segment, or a segment above
    it, is about a sensitive topic are left unsegmented with the category as their reason: a
    segment of people who write about their religion, health or politics must not be targeted.
    "flag" keeps them where they are (the segments table carries the flag)."""
    if mode != "exclude" or users.empty:
        return users
    frame = segments if isinstance(segments, pd.DataFrame) else pd.DataFrame([s.model_dump() for s in segments])
    if frame.empty or "sensitive" not in frame:
        return users
    parent = dict(zip(frame["segment_id"].astype(int), frame.get("parent_id", pd.Series(-1, index=frame.index))
                      .fillna(-1).astype(int), strict=True))
    flag = {int(i): str(c) for i, c in zip(frame["segment_id"], frame["sensitive"].fillna(""), strict=True) if c}

    def category(segment: int) -> str:
        seen = set()
        while segment >= 0 and segment not in seen:
            if segment in flag:
                return flag[segment]
            seen.add(segment)
            segment = parent.get(segment, -1)
        return ""

    found = [category(int(s)) for s in users["segment_id"]]
    hit = np.array([bool(c) for c in found])
    if not hit.any():
        return users
    users = users.copy()
    users.loc[hit, ["segment_id", "parent_id"]] = -1
    users.loc[hit, ["segment_name", "parent_name"]] = ""
    users.loc[hit, "assigned_by"] = "unsegmented"
    users.loc[hit, "reason"] = [f"sensitive topic: {c} (--sensitive exclude)" for c in np.array(found, dtype=object)[hit]]
    return users
