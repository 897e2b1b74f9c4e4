"""Character classes of East Asian scripts, one definition for every stage that asks about them.

The constants are regex class bodies (ranges without brackets), so a module that needs another
mix builds it from these: `f"[{CJK}{HANGUL}]"`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

# Han ideographs: CJK Extension A and the Unified block, and the compatibility ideographs.
HAN = "\u3400-\u9fff\uf900-\ufaff"
# Hiragana and katakana.
KANA = "\u3040-\u30ff"
# Hangul syllables.
HANGUL = "\uac00-\ud7af"
# Unspaced East Asian text (Chinese and Japanese): read by characters, not by spaces.
CJK = KANA + HAN

HAN_CHAR = re.compile(f"[{HAN}]")
CJK_CHAR = re.compile(f"[{CJK}]")
_HAN_RUN = re.compile(f"[{HAN}]+")


def has_han(text: str) -> bool:
    """True when the text holds a Han ideograph (Chinese, as jieba reads it)."""
    return HAN_CHAR.search(text) is not None


def has_cjk(text: str) -> bool:
    """True when the text holds a Han ideograph or a kana character."""
    return CJK_CHAR.search(text) is not None


def han_runs(text: str) -> list[str]:
    """The text's unbroken stretches of Han ideographs, in order."""
    return _HAN_RUN.findall(text)


def mostly_cjk(texts: Sequence[str], sample: int = 200) -> bool:
    """True when more than half of the first `sample` texts hold a Han or kana character."""
    picked = list(texts[:sample])
    return bool(picked) and sum(has_cjk(t) for t in picked) / len(picked) > 0.5
