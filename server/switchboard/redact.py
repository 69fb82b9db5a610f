"""Text from outside (a provider's error message) made fit for the server log.

A provider's error text can quote our key (`sk-abc...wxyz`), our
organization (`org-...`), a signed URL or a token, and is as long as the
provider likes. Such text never reaches a caller or a span; what goes to the
log passes through `redact` first: every secret-looking token replaced by a
placeholder, control characters flattened (one log line stays one line), and
the whole bounded in length. Placeholders carry no fragment of what they
replace, so not even a key's prefix survives.
"""

from __future__ import annotations

import re

# What the log keeps of one provider message.
MAX_DETAIL_CHARS = 300
# Redaction scans at most this much: long enough that a cut cannot split a
# secret the kept part would show, short enough that a megabyte costs nothing.
_SCAN_CHARS = 4 * MAX_DETAIL_CHARS

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # `Authorization: Bearer <token>`, `Basic <credentials>`.
    (re.compile(r"\b(bearer|basic)\s+[^\s,;\"')]+", re.IGNORECASE), r"\1 <redacted>"),
    # `key=...`, `api_key=...`, `token=...`, in URLs or free text.
    (
        re.compile(
            r"\b((?:api[_-]?)?key|token|access_token|secret|password|sig|signature|"
            r"code|auth)=[^&\s\"']+",
            re.IGNORECASE,
        ),
        r"\1=<redacted>",
    ),
    # OpenAI/Anthropic-style keys (`sk-...`, `sk-proj-...`, `sk-ant-...`), shown
    # whole or abbreviated (`sk-abc...wxyz`, `sk-abc***wxyz`).
    (re.compile(r"(?<![A-Za-z0-9])(?:sk|rk|pk)-[A-Za-z0-9_\-.*…]+", re.IGNORECASE), "<key>"),
    # Google API keys, AWS access key ids, JWTs.
    (re.compile(r"AIza[0-9A-Za-z_\-]{10,}"), "<key>"),
    (re.compile(r"\b(?:AKIA|ASIA)[0-9A-Z]{12,}\b"), "<key>"),
    (re.compile(r"\beyJ[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.?[A-Za-z0-9_\-]*"), "<token>"),
    # Organization and project ids.
    (re.compile(r"(?<![A-Za-z0-9])org-[A-Za-z0-9_\-.*…]+", re.IGNORECASE), "<org>"),
    (re.compile(r"(?<![A-Za-z0-9])proj_[A-Za-z0-9_\-.*…]+", re.IGNORECASE), "<project>"),
    (re.compile(r"(?<![\w.+\-])[\w.+\-]+@[\w\-]+(?:\.[\w\-]+)+"), "<email>"),
    # Long hex or base64 runs with a digit in them: secrets, signatures, hashes.
    (re.compile(r"\b[0-9a-fA-F]{24,}\b"), "<secret>"),
    (
        re.compile(r"(?<![A-Za-z0-9+/_\-])(?=[A-Za-z+/_\-]*\d)[A-Za-z0-9+/_\-]{24,}=*"),
        "<secret>",
    ),
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
_SPACES = re.compile(r"\s{2,}")


def redact(text: str, limit: int = MAX_DETAIL_CHARS) -> str:
    """`text` with secret-looking tokens replaced, on one line, at most `limit` characters."""
    out = _CONTROL.sub(" ", text[:_SCAN_CHARS])
    for pattern, placeholder in _PATTERNS:
        out = pattern.sub(placeholder, out)
    out = _SPACES.sub(" ", out).strip()
    return out if len(out) <= limit else out[: max(0, limit - 1)] + "…"
