"""Forum and mailing-list text: drop what others wrote (quotes, attributions) and repeated signatures.

Both run on every comment of a large input, so each is linear in the text and exits early when a
comment holds no marker at all.
"""

from __future__ import annotations

import re
from difflib import SequenceMatcher

# How many words at the end of a post may hold a signature; nothing before them is ever stripped.
TAIL_WORDS = 60
# A signature shared by two posts with no other sign of being one must be this long: shorter shared
# endings ("Thanks in advance") are as likely the user's own words.
MIN_SIGNATURE_WORDS = 8
# An exact shared ending this long counts when it holds an e-mail address or starts at a "--" delimiter
# ("-- John Carr (jfc@athena.mit.edu)").
MIN_MARKED_SIGNATURE_WORDS = 3
# Words after a fixed signature block that may differ between posts: a rotating quote, only
# accepted after a block holding an address or a "--" delimiter.
MAX_ROTATING_WORDS = 45
# Share of aligned words that makes two tails the same signature (a changed phone extension or quote line).
NEAR_SIMILARITY = 0.8
# Earlier posts compared with each post; the newest ones sharing most of its tail.
CANDIDATES = 3
# Earlier posts remembered per word triple: enough to find the newest holder of a signature and
# bounded, so a user with 10,000 posts stays linear.
POSTS_PER_SHINGLE = 4
# Word triples a tail must share with an earlier tail before the two are aligned: a shared run of
# MIN_SIGNATURE_WORDS words gives MIN_SIGNATURE_WORDS - 2 triples.
MIN_SHARED_SHINGLES = MIN_SIGNATURE_WORDS - 2
# Chars between an "In article <id>" and a later "writes:" still read as one attribution.
ATTRIBUTION_SPAN = 200

_MSGID = r"<[^<>\s]{1,160}>"
# neither half holds an '@', so a word of many '@'s costs a regex one pass, not one per '@'
_ADDR = r"[^\s,()<>\"\[\]@]+@[^\s,()<>\"\[\]@]+"
# A parenthesised name only when it closes: "(Jim De" cut by a lost line end is left alone, as
# nothing tells where the cut name stops and the user's own words begin.
_NAME = r"\([^()\n]{0,60}\)"
_VERB = r"(?:writes|wrote|says)(?:[ \t]*:|[ \t]*\.\.\.|,)"
_ARTICLE_ATTRIBUTION = re.compile(
    # "In article <id>, addr (Name) writes:" with every part after the id optional, as newsreaders wrote it
    rf"In article {_MSGID},?(?:\s*(?:[\w.'-]+(?: [\w.'-]+){{0,3}},\s*|\"[^\"\n]{{1,60}}\"\s*)?<?{_ADDR}>?)?"
    rf"(?:\s*{_NAME})?(?:\s*(?P<verb>{_VERB}))?"
    rf"|In a previous article,\s*(?:{_ADDR}(?:\s*{_NAME})?(?:\s*{_VERB})?|{_NAME}\s*{_VERB})"
    rf"|Quoting\s+{_ADDR}(?:\s*{_NAME})?\s+in article\s+{_MSGID}:?"
)
# "[On <date>,] [John Smith] <js@x.org> wrote:"; an address is required, so "I wrote a letter" stays. It
# starts at a word start only, so a long word is not rescanned from each of its letters.
_ADDRESS_ATTRIBUTION = re.compile(
    rf"(?<!\S)(?:On [^<>@\n]{{0,80}}?\d[^<>@\n]{{0,40}}?,?\s+)?(?:[A-Z][\w.'-]*,?\s+){{0,3}}<?{_ADDR}>?"
    rf"(?:\s*{_NAME})?\s*{_VERB}"
)
_ATTRIBUTION_VERB = re.compile(r"writes|wrote|says")
_VERB_AHEAD = re.compile(rf"([^<>\n]{{0,{ATTRIBUTION_SPAN}}}?)\b{_VERB}")
# A sentence end inside the span means the "writes:" belongs to the user's own sentence; an
# initial ("A. Name") is not one.
_SENTENCE_END = re.compile(r"(?<![\s(][A-Z])[.!?]+[\"')\]]*\s")
_TRAILING_SPACE = re.compile(r"[ \t]*")
_QUOTE_LINE = re.compile(r"[ \t]*(?:\|[ \t]*)*>")
_ATTRIBUTION_LINE = re.compile(r"[^\n]{0,200}\b(?:writes|wrote|says)[ \t]*:[ \t]*|[ \t]*Quoting\s[^\n]{1,150}:[ \t]*")
# The first half of "On Mon, 12 Apr 1993 10:02, John Smith\n<js@x.org> wrote:" wrapped over two lines.
_ON_DATE_LINE = re.compile(r"[ \t]*On [^\n]{0,150}\d[^\n]{0,150}(?<![.!?])")
_EMAIL = re.compile(r"[^\s@]@[^\s@]+\.[^\s@]")
_HAS_WORD = re.compile(r"\w")


def strip_quoted(text: str) -> tuple[str, int]:
    """Drop text quoted from others: '>'/'|>' lines and attributions ("In article <id>, a@b (Name) writes:",
    "John Smith <js@x.org> wrote:", "On <date>, X wrote:", "X writes:", "Quoting X:").

    Returns the text and the number of pieces dropped (an attribution, or a run of quoted lines, is one).
    Text without newlines (collapsed upstream) only loses inline attributions, as an inline '>' may be the
    user's own; text with newlines keeps them. Text holding nothing to drop is returned as is. An inline
    attribution goes up to its "writes:" when that follows within ATTRIBUTION_SPAN chars, else through the
    message id, address and a closed "(Name)"; a name cut open ("(Jim De Go to hell.") stays.
    """
    if "\n" not in text and "article" not in text and "@" not in text:
        return text, 0  # collapsed text without an attribution's parts: the common case, decided in C
    stripped, pieces = _drop_inline_attributions(text)
    if "\n" in stripped:
        stripped, quoted = _drop_quoted_lines(stripped)
        pieces += quoted
    return (stripped, pieces) if pieces else (text, 0)


def _drop_inline_attributions(text: str) -> tuple[str, int]:
    spans: list[tuple[int, int]] = []
    if "article" in text:
        for match in _ARTICLE_ATTRIBUTION.finditer(text):
            end = match.end()
            if match.group(0).startswith("In article") and not match.group("verb"):
                end = _extend_to_verb(text, end)
            spans.append((match.start(), end))
    if "@" in text and _ATTRIBUTION_VERB.search(text):
        spans += [match.span() for match in _ADDRESS_ATTRIBUTION.finditer(text)]
    if not spans:
        return text, 0
    kept: list[str] = []
    pos = pieces = 0
    for start, end in sorted(spans):
        if start < pos:  # inside an attribution already dropped (one "In article" extended to its verb)
            continue
        kept.append(text[pos:start])
        pos, pieces = _TRAILING_SPACE.match(text, end).end(), pieces + 1
        if text.startswith("\n", pos) and not text[text.rfind("\n", 0, start) + 1:start].strip():
            pos += 1  # an attribution on a line of its own takes the line with it
    kept.append(text[pos:])
    return "".join(kept), pieces


def _extend_to_verb(text: str, end: int) -> int:
    """'In article <id> Jason Kratz writes:' names the author without an address: reach the verb when it
    follows closely and no sentence ends before it."""
    ahead = _VERB_AHEAD.match(text, end)
    if ahead and not _SENTENCE_END.search(ahead.group(1) + " "):
        return ahead.end()
    return end


def _drop_quoted_lines(text: str) -> tuple[str, int]:
    kept: list[str] = []
    pieces = 0
    in_quote = False
    for line in text.split("\n"):
        if _QUOTE_LINE.match(line):
            pieces += not in_quote
            in_quote = True
        elif line.rstrip().endswith(":") and _ATTRIBUTION_LINE.fullmatch(line):
            if kept and _ON_DATE_LINE.fullmatch(kept[-1]):
                kept.pop()
            pieces += 1
        else:
            # a blank line inside a quote does not end it, so one quoted passage is one piece
            in_quote = in_quote and not line.strip()
            kept.append(line)
    return "\n".join(kept), pieces


def drop_repeated_signatures(comments: list[str]) -> tuple[list[str], int]:
    """Keep a signature repeated across one user's comments (newest first) only in the newest that holds it.

    A signature is a shared ending within a comment's last TAIL_WORDS words: exact, or aligned with
    NEAR_SIMILARITY (a changed line), optionally followed by a rotating quote. Returns the comments (same
    length and order; one that would become empty keeps its text) and how many were stripped.
    """
    if len(comments) < 2:
        return list(comments), 0
    result = list(comments)
    index = _TailIndex()
    stripped = 0
    for position, comment in enumerate(comments):
        tail = comment.rsplit(None, TAIL_WORDS)[-TAIL_WORDS:]
        start = index.add(tail)
        if start is not None:
            body = _without_last_words(comment, len(tail) - start)
            if _HAS_WORD.search(body):  # a comment of nothing but the signature keeps it
                result[position] = body
                stripped += 1
    return result, stripped


class _TailIndex:
    """The tails of one user's comments, newest first, found by their last words and by the word triples
    they hold; at most POSTS_PER_SHINGLE comments per key, the newest, so each lookup costs the same."""

    def __init__(self) -> None:
        self.tails: list[list[str]] = []
        self.by_ending: dict[tuple[str, ...], list[int]] = {}
        self.by_shingle: dict[tuple[str, str, str], list[int]] = {}

    def add(self, tail: list[str]) -> int | None:
        """Index `tail`; return where a signature it shares with a newer comment starts, or None."""
        position = len(self.tails)
        self.tails.append(tail)
        hits: dict[int, int] = {}
        # one pass both counts the newer tails sharing each triple and files this tail under it
        for shingle in zip(tail, tail[1:], tail[2:]):
            holders = self.by_shingle.get(shingle)
            if holders is None:
                self.by_shingle[shingle] = [position]
                continue
            for holder in holders:
                if holder != position:
                    hits[holder] = hits.get(holder, 0) + 1
            if len(holders) < POSTS_PER_SHINGLE and holders[-1] != position:
                holders.append(position)
        ending = tuple(tail[-MIN_MARKED_SIGNATURE_WORDS:])
        same_end = self.by_ending.setdefault(ending, [])
        shared = max((_common_suffix(tail, self.tails[h]) for h in same_end), default=0)
        if len(same_end) < POSTS_PER_SHINGLE:
            same_end.append(position)
        if len(tail) < MIN_MARKED_SIGNATURE_WORDS:
            return None
        exact: int | None = len(tail) - shared
        if not (shared >= MIN_SIGNATURE_WORDS or shared >= MIN_MARKED_SIGNATURE_WORDS and _marked(tail, exact)):
            exact = None
        elif exact == 0 or tail[_with_delimiter(tail, exact)] == "--":
            return _with_delimiter(tail, exact)  # the whole tail, or a delimited block: nothing to find before it
        # An exact ending may be the part after a changed line; an aligned block then starts earlier.
        # Most shared triples first, then the newest.
        ranked = sorted((h for h, n in hits.items() if n >= MIN_SHARED_SHINGLES), key=lambda h: (-hits[h], h))
        for holder in ranked[:CANDIDATES]:
            aligned = _aligned_start(tail, self.tails[holder])
            if aligned is not None:
                return _with_delimiter(tail, aligned if exact is None else min(aligned, exact))
        return None if exact is None else _with_delimiter(tail, exact)


def _without_last_words(text: str, count: int) -> str:
    parts = text.rsplit(None, count)
    return parts[0].rstrip() if len(parts) > count else ""


def _common_suffix(a: list[str], b: list[str]) -> int:
    shared = 0
    for x, y in zip(reversed(a), reversed(b)):
        if x != y:
            break
        shared += 1
    return shared


def _marked(tail: list[str], start: int, end: int | None = None) -> bool:
    """tail[start:end] reads as a signature on its own: it opens at a '--' delimiter or holds an address. A
    '--' further inside may be a dash in the user's own text."""
    return tail[start] == "--" or (start > 0 and tail[start - 1] == "--") or any(
        _EMAIL.search(word) for word in tail[start:end])


def _with_delimiter(tail: list[str], start: int) -> int:
    return start - 1 if start > 0 and tail[start - 1] == "--" else start


def _aligned_start(tail: list[str], other: list[str]) -> int | None:
    """Start of the block both tails end with, near-exactly, or followed by a rotating quote when the
    block reads as a signature on its own."""
    blocks = [b for b in SequenceMatcher(None, tail, other, autojunk=False).get_matching_blocks() if b.size >= 2]
    if not blocks:
        return None
    end_mine, end_other = blocks[-1].a + blocks[-1].size, blocks[-1].b + blocks[-1].size
    matched = shared = 0
    start: int | None = None
    # grow the block backwards from the last match while it stays dense in both tails
    for block in reversed(blocks):
        matched += block.size
        if matched < NEAR_SIMILARITY * max(end_mine - block.a, end_other - block.b):
            break
        if matched >= MIN_SIGNATURE_WORDS:
            start, shared = block.a, matched
    if start is None:
        return None
    after = max(len(tail) - end_mine, len(other) - end_other)
    if after <= 2 + (1 - NEAR_SIMILARITY) * shared:
        return start
    return start if after <= MAX_ROTATING_WORDS and _marked(tail, start, end_mine) else None
