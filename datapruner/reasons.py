"""Why a sample is not used: a short stable category, then detail that names no address, id or timing.

Every reason in errors/ is `category: detail`; summaries count by category, so their size is bounded
by the categories, not by the number of bad samples.
"""

from __future__ import annotations

import re

_ADDRESS = re.compile(r"<([\w.]+) object at 0x[0-9a-fA-F]+>")
_HEX_ID = re.compile(r"\b0x[0-9a-fA-F]{6,}\b")


def reason(category: str, detail: str = "") -> str:
    detail = stable(detail).replace("\n", " ").strip()
    return f"{category}: {detail}" if detail else category


def category_of(reason_text: str) -> str:
    return reason_text.split(": ", 1)[0]


def invalid(stage: str, reason_text: str) -> str:
    """The manifest's reason for a sample errors/ holds."""
    return f"{INVALID}{stage}: {reason_text}"


def counted_as(manifest_reason: str) -> str:
    """What a summary counts a manifest reason under: its category, never its detail."""
    if not manifest_reason.startswith(INVALID):
        return manifest_reason  # kept / removed by filter F / below the budget: fixed texts
    stage, _, rest = manifest_reason[len(INVALID):].partition(": ")
    return f"{INVALID}{stage}: {category_of(rest)}"


INVALID = "invalid at "


def stable(message: str) -> str:
    """The same text for the same input: object reprs and bare addresses lose their heap address."""
    return _HEX_ID.sub("0x…", _ADDRESS.sub(r"<\1>", message))
