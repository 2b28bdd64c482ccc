"""Text from the dataset (file names, labels, notes) as it may be shown on a terminal or in a message."""
from __future__ import annotations

import unicodedata

# bidirectional overrides and isolates: they reorder what a terminal shows
_BIDI = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


def safe_text(text) -> str:
    """Text as it may be printed on a terminal: control characters (an escape sequence in a file name could
    recolour or rewrite the screen), bidirectional overrides and other format characters are written as
    ``\\x1b`` / ``\\u202e``; newlines are kept."""
    text = str(text)
    if text.isprintable():
        return text
    out = []
    for ch in text:
        if ch == "\n" or (ch.isprintable() and ch not in _BIDI):
            out.append(ch)
        elif unicodedata.category(ch) in ("Zs",):
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def shown_entry(value, max_chars: int = 80) -> str:
    """A value from a bad entry as it may be quoted in a finding: escaped (``safe_text``), cut to ``max_chars``."""
    text = safe_text(value).replace("\n", "\\n")
    return text if len(text) <= max_chars else text[:max_chars] + f"... ({len(text):,} characters)"
