"""The `pii` redactor: masks personal data and secrets in record text.

`PIIRedactor` is the built-in `loopline.redactors` plugin (`pii`). It finds, in this order:

1. `secret`: API keys and tokens (OpenAI, AWS, GitHub, Slack, Hugging Face), JWTs, PEM private
   key blocks, the value after `api_key=` / `token:` / `password=` and the like, and the token
   after `Bearer`;
2. `email`: e-mail addresses;
3. `credit_card`: 13 to 19 digits, optionally grouped by spaces or dashes, that pass the Luhn check;
4. `phone`: international (`+44 20 7946 0958`, `0049 30 1234567`) and national
   (`(415) 555-0132`, `415-555-0132`) numbers with 9 to 15 digits.

Every finder looks at the original text; a finding that overlaps one made earlier in this order is
dropped, so a masked span is never scanned again and a card number is never half masked as a
phone number. Each finding is replaced by the mask, `[{kind}]` by default (`[EMAIL]`, `[PHONE]`,
`[CREDIT_CARD]`, `[SECRET]`).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Iterable, Iterator

from services.ingester.redactors.base import Redactor

__all__ = ["KINDS", "PIIRedactor", "luhn_valid"]

# The kinds in the order they are looked for: an earlier kind wins an overlap.
KINDS: tuple[str, ...] = ("secret", "email", "credit_card", "phone")

Span = tuple[int, int]
Finder = Callable[[str], Iterator[Span]]

# --- secrets -------------------------------------------------------------------------------------

_TOKEN_PATTERNS: tuple[re.Pattern[str], ...] = (
    # PEM private keys: the BEGIN line, the base64 body (and any `Proc-Type:` headers), and the END
    # line; a block cut off before its END line is masked to the end of its body. The body may only
    # hold PEM characters, so everything scanned is consumed and the search stays linear.
    re.compile(
        r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----[A-Za-z0-9+/=\s:,.-]*?"
        r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|(?![A-Za-z0-9+/=\s:,.-]))"
    ),
    # JSON Web Tokens: three base64url parts, the first (the header) starting `eyJ` (`{"`).
    re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]+"),
    # OpenAI (`sk-...`, `sk-proj-...`) and lookalikes such as Anthropic's `sk-ant-...`.
    re.compile(r"(?<![A-Za-z0-9_-])sk-[A-Za-z0-9][A-Za-z0-9_-]{19,}"),
    # AWS access key ids (long-term `AKIA`, temporary `ASIA`).
    re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)[0-9A-Z]{16}(?![A-Za-z0-9])"),
    # GitHub tokens: classic (`ghp_`, OAuth `gho_`, ...) and fine-grained (`github_pat_`).
    re.compile(r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,})"),
    # Slack tokens.
    re.compile(r"(?<![A-Za-z0-9_-])xox[abposr]-[A-Za-z0-9-]{10,}"),
    # Hugging Face tokens.
    re.compile(r"(?<![A-Za-z0-9_])hf_[A-Za-z0-9]{30,}"),
)

# `api_key=...`, `"token": "..."`, `PASSWORD: ...`: only the value is masked. The key must not be
# glued to a word before it (so `max_tokens: 5` and `eos_token: </s>` are left alone).
_KEY_VALUE = re.compile(
    r"(?<![A-Za-z0-9_.-])"
    r"(?:x-)?(?:api[_-]?key|secret(?:[_-]?key)?|client[_-]?secret|(?:aws[_-])?secret[_-]access[_-]key"
    r"|(?:access|auth|refresh|session|api|bot)[_-]?token|token|password|passwd|pwd)"
    r"[\"']?[ \t]*[:=][ \t]*"
    r"(?:\"(?P<double>[^\"\r\n]+)\"|'(?P<single>[^'\r\n]+)'|(?!bearer\b)(?P<bare>[^\s\"',;&]+))",
    re.IGNORECASE,
)

# `Bearer <token>`: only the token is masked; it must look like one (8+ characters, a digit).
_BEARER = re.compile(
    r"(?<![A-Za-z0-9])bearer[ \t]+(?P<token>[A-Za-z0-9._~+/-]{8,}=*)", re.IGNORECASE
)


def _find_secrets(text: str) -> Iterator[Span]:
    for pattern in _TOKEN_PATTERNS:
        for match in pattern.finditer(text):
            yield match.span()
    for match in _KEY_VALUE.finditer(text):
        for group in ("double", "single", "bare"):
            if match.group(group) is not None:
                yield match.span(group)
                break
    for match in _BEARER.finditer(text):
        start, end = match.span("token")
        while end > start and text[end - 1] == ".":  # the end of a sentence, not of the token
            end -= 1
        if end - start >= 8 and any(c.isdigit() for c in text[start:end]):
            yield start, end


# --- e-mail --------------------------------------------------------------------------------------

_EMAIL = re.compile(
    r"(?<![A-Za-z0-9._%+-])"
    r"[A-Za-z0-9_%+-](?:[A-Za-z0-9._%+-]*[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
    r"(?![A-Za-z0-9-])"
)


def _find_emails(text: str) -> Iterator[Span]:
    for match in _EMAIL.finditer(text):
        yield match.span()


# --- credit cards --------------------------------------------------------------------------------

# A run of digit groups joined by single spaces or dashes. The separator is mandatory between
# groups, so the pattern cannot backtrack badly; which groups form a card is decided in code.
_DIGIT_RUN = re.compile(r"\d+(?:[ -]\d+)*")
_DIGIT_GROUP = re.compile(r"\d+")


def luhn_valid(digits: str) -> bool:
    """Whether a string of digits passes the Luhn checksum."""
    if not digits.isdigit():
        return False
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2 == 1:
            value *= 2
            if value > 9:
                value -= 9
        total += value
    return total % 10 == 0


def _find_credit_cards(text: str) -> Iterator[Span]:
    for run in _DIGIT_RUN.finditer(text):
        start, end = run.span()
        before = text[start - 1] if start else ""
        after = text[end] if end < len(text) else ""
        # Glued to a word, a signed or decimal number, or a phone's `+`: not a card.
        if (before and (before.isalnum() or before in "_.+-/")) or after.isalnum() or after == "_":
            continue
        groups = [(m.start() + start, m.end() + start) for m in _DIGIT_GROUP.finditer(run.group())]
        yield from _cards_in_groups(text, groups)


def _cards_in_groups(text: str, groups: list[Span]) -> Iterator[Span]:
    """The longest Luhn-valid runs of 13-19 digits made of whole consecutive groups."""
    first = 0
    while first < len(groups):
        found = None
        if text[groups[first][0]] != "0":  # card numbers never start with 0
            digits = ""
            candidates: list[tuple[int, str]] = []
            for last in range(first, len(groups)):
                if last > first and groups[last - 1][1] - groups[last - 1][0] < 3:
                    break  # only the last group of a card may be shorter than 3 digits
                digits += text[groups[last][0] : groups[last][1]]
                if len(digits) > 19:
                    break
                if len(digits) >= 13:
                    candidates.append((last, digits))
            for last, digits in reversed(candidates):
                if luhn_valid(digits):
                    found = last
                    break
        if found is None:
            first += 1
        else:
            yield groups[first][0], groups[found][1]
            first = found + 1


# --- phone numbers -------------------------------------------------------------------------------

# An optional `+`, then digit groups joined by a space, dot or dash; a parenthesised group such as
# `(415)` or `(0)` may also sit right against its neighbours. Every alternative consumes a
# separator or a parenthesis, so the pattern cannot backtrack badly.
_PHONE_GROUP = r"(?:\d+|\(\d{1,5}\))"
_PHONE = re.compile(
    r"(?:(?<=tel:)|(?<![\w+.:/-]))"
    r"(?:\+[ ]?)?" + _PHONE_GROUP + r"(?:(?:[ .-]|(?<=\))|(?=\())" + _PHONE_GROUP + r")*"
    r"(?![\w+]|[:./-]\d)"
)
_DATE = re.compile(
    r"(?<!\d)(?:1[89]|20)\d{2}[-./](?:0?[1-9]|1[0-2])[-./](?:0?[1-9]|[12]\d|3[01])(?!\d)"
    r"|(?<!\d)(?:0?[1-9]|[12]\d|3[01])[-./](?:0?[1-9]|1[0-2])[-./](?:1[89]|20)\d{2}(?!\d)"
    r"|(?<!\d)(?:0?[1-9]|1[0-2])[-./](?:0?[1-9]|[12]\d|3[01])[-./](?:1[89]|20)\d{2}(?!\d)"
)
_IPV4 = re.compile(r"\d{1,3}(?:\.\d{1,3}){3}")
_AMOUNT = re.compile(r"\d{1,2}(?:[ ,]\d{3}){2,}")  # a number with thousands separators
_PHONE_GROUP_LOOSE = re.compile(r"(?<![\d(])\d+(?![\d)])")  # a digit group not in parentheses


def _looks_like_phone(candidate: str) -> bool:
    digits = sum(c.isdigit() for c in candidate)
    if not 9 <= digits <= 15:
        return False
    if not candidate.startswith("+") and candidate.isdigit():
        return False  # a bare run of digits is an id or a timestamp as often as a phone number
    if _DATE.search(candidate):
        return False
    groups = _DIGIT_GROUP.findall(candidate)
    if len(groups[-1]) < 2:
        return False  # ISBNs and the like end in a check digit; phone numbers do not
    if not candidate.startswith("+") and _AMOUNT.fullmatch(candidate):
        return False  # 1 000 000 000
    if "." in candidate:
        # Dots make version numbers and IP addresses: allow them only between groups of 2+ digits.
        national = groups[1:] if candidate.startswith("+") else groups  # `+1.415.555.0132`
        if _IPV4.fullmatch(candidate) or any(len(group) < 2 for group in national):
            return False
    loose = [g for g in _PHONE_GROUP_LOOSE.findall(candidate) if len(g) == 1]
    return len(loose) <= 1  # `+33 1 23 45 67 89`, but not `978-3-16-1-48410-00`


def _find_phones(text: str) -> Iterator[Span]:
    for match in _PHONE.finditer(text):
        candidate = match.group()
        if _looks_like_phone(candidate):
            yield match.span()


_FINDERS: dict[str, Finder] = {
    "secret": _find_secrets,
    "email": _find_emails,
    "credit_card": _find_credit_cards,
    "phone": _find_phones,
}


# --- the plugin ----------------------------------------------------------------------------------


class PIIRedactor(Redactor):
    """Masks e-mail addresses, phone numbers, card numbers and secrets (`loopline.redactors: pii`).

    `kinds` picks which kinds to mask (all of `KINDS` by default); `mask` is the replacement, in
    which `{kind}` stands for the upper-cased kind (`[{kind}]` gives `[EMAIL]`).
    """

    def __init__(self, kinds: list[str] | None = None, mask: str = "[{kind}]") -> None:
        if kinds is None:
            chosen = set(KINDS)
        else:
            if isinstance(kinds, str) or not isinstance(kinds, Iterable):
                raise ValueError(f"`kinds` must be a list of {list(KINDS)}")
            chosen = set()
            for kind in kinds:
                if not isinstance(kind, str):
                    raise ValueError(f"`kinds` must be strings, got {kind!r}")
                chosen.add(kind)
            unknown = sorted(chosen - set(KINDS))
            if unknown:
                raise ValueError(f"unknown kinds {unknown}; known kinds: {list(KINDS)}")
        if not isinstance(mask, str):
            raise ValueError(f"`mask` must be a string, got {mask!r}")
        try:
            masks = {kind: mask.format(kind=kind.upper()) for kind in KINDS}
        except (KeyError, IndexError, ValueError, AttributeError) as exc:
            raise ValueError(f"bad `mask` {mask!r}: only {{kind}} may be used ({exc!r})") from exc
        self.kinds: tuple[str, ...] = tuple(kind for kind in KINDS if kind in chosen)
        self.mask = mask
        self._masks = masks

    def find(self, text: str) -> list[tuple[int, int, str]]:
        """The findings in `text` as sorted, non-overlapping `(start, end, kind)`."""
        starts: list[int] = []
        spans: list[tuple[int, int, str]] = []
        for kind in self.kinds:
            for start, end in _FINDERS[kind](text):
                if end <= start:
                    continue
                at = bisect.bisect_right(starts, start)
                if at > 0 and spans[at - 1][1] > start:
                    continue  # overlaps the finding before it
                if at < len(spans) and spans[at][0] < end:
                    continue  # overlaps the finding after it
                starts.insert(at, start)
                spans.insert(at, (start, end, kind))
        return spans

    def redact(self, text: str) -> tuple[str, dict[str, int]]:
        """The text with every finding masked, and how many findings of each kind (only kinds
        that were found appear)."""
        spans = self.find(text)
        if not spans:
            return text, {}
        pieces: list[str] = []
        counts: dict[str, int] = {}
        position = 0
        for start, end, kind in spans:
            pieces.append(text[position:start])
            pieces.append(self._masks[kind])
            counts[kind] = counts.get(kind, 0) + 1
            position = end
        pieces.append(text[position:])
        return "".join(pieces), counts
