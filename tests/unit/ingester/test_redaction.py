import copy
from typing import Any

import pytest

from services.ingester.redactors.base import Redactor, redact_record_input
from services.ingester.redactors.pii import KINDS, PIIRedactor, luhn_valid


@pytest.fixture(scope="module")
def redactor() -> PIIRedactor:
    return PIIRedactor()


def test_is_a_redactor() -> None:
    plugin: Redactor = PIIRedactor()
    assert plugin.redact("nothing to see here") == ("nothing to see here", {})


# --- email ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "a.b+c@sub.example.co.uk",
        "jane@example.com",
        "JOHN_DOE-1@mail.example.org",
        "x%y@ex-ample.io",
    ],
)
def test_email_is_masked(redactor: PIIRedactor, address: str) -> None:
    assert redactor.redact(f"write to {address}, please") == (
        "write to [EMAIL], please",
        {"email": 1},
    )


def test_emails_are_counted(redactor: PIIRedactor) -> None:
    text = "cc: a@example.com; b@example.com\nfrom <c.d@example.net>"
    assert redactor.redact(text) == ("cc: [EMAIL]; [EMAIL]\nfrom <[EMAIL]>", {"email": 3})


@pytest.mark.parametrize("text", ["user@localhost", "@handle", "a@b", "name@example.", "x @ y.com"])
def test_not_emails(redactor: PIIRedactor, text: str) -> None:
    assert redactor.redact(text) == (text, {})


# --- phone ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "+1 (415) 555-0132",
        "+44 20 7946 0958",
        "415-555-0132",
        "0049 30 1234567",
        "(415) 555-0132",
        "415.555.0132",
        "+14155550132",
        "+49 (0)30 1234567",
        "+33 1 23 45 67 89",
        "+91 98765 43210",
        "1-800-555-0132",
    ],
)
def test_phone_is_masked(redactor: PIIRedactor, number: str) -> None:
    assert redactor.redact(f"call {number} today.") == ("call [PHONE] today.", {"phone": 1})


def test_phones_are_counted(redactor: PIIRedactor) -> None:
    text = "US 415-555-0132, UK +44 20 7946 0958, DE 0049 30 1234567"
    assert redactor.redact(text) == ("US [PHONE], UK [PHONE], DE [PHONE]", {"phone": 3})


@pytest.mark.parametrize(
    "text",
    [
        "on 2024-01-15 at noon",
        "the meeting is 2024-01-15 10:30 sharp",
        "at 10:30:45 or 23:59",
        "ts=2024-01-15T10:30:00Z",
        "ts=2024-01-15T10:30:00.123456789+00:00",
        "logged 2024-01-15 10:30:00,123",
        "version 1.2.3",
        "upgrade to 10.0.19041.1234",
        "host 192.168.100.200",
        "answer 42, count 1234567, code 555-0132",
        "epoch 1705312200",
        "1 000 000 000 tokens",
        "ISBN 978-3-16-148410-0",
        "between 100-200 and 300-400",
    ],
)
def test_not_phones(redactor: PIIRedactor, text: str) -> None:
    assert redactor.redact(text) == (text, {})


# --- credit cards --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "number",
    [
        "4111111111111111",
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "5555 5555 5555 4444",
        "3782 822463 10005",  # Amex, 15 digits
        "6011000990139424",
        "4222222222222",  # 13 digits
        "6304 0000 0000 0000 018",  # 19 digits
    ],
)
def test_credit_card_is_masked(redactor: PIIRedactor, number: str) -> None:
    assert redactor.redact(f"card: {number} exp 12/27") == (
        "card: [CREDIT_CARD] exp 12/27",
        {"credit_card": 1},
    )


def test_card_next_to_other_numbers(redactor: PIIRedactor) -> None:
    text = "4111 1111 1111 1111 123 and 12 5555 5555 5555 4444"
    assert redactor.redact(text) == ("[CREDIT_CARD] 123 and 12 [CREDIT_CARD]", {"credit_card": 2})


@pytest.mark.parametrize(
    "text",
    [
        "4111111111111112",  # one digit off: fails Luhn
        "4111 1111 1111 1112",
        "1234567890123456",
        "9876-5432-1098-7654",
        "order 12345678901234567890123",  # too long
        "0000000000000000",  # passes Luhn, but no card starts with 0
        "pi is 3.14159265358979323",
    ],
)
def test_not_credit_cards(redactor: PIIRedactor, text: str) -> None:
    assert redactor.redact(text) == (text, {})


def test_luhn() -> None:
    assert luhn_valid("79927398713")
    assert luhn_valid("4111111111111111")
    assert not luhn_valid("79927398710")
    assert not luhn_valid("4111-1111")
    assert not luhn_valid("")


def test_credit_card_wins_over_phone(redactor: PIIRedactor) -> None:
    # 16 digits in groups, which the phone pattern alone would also take.
    assert redactor.redact("4111 1111 1111 1111") == ("[CREDIT_CARD]", {"credit_card": 1})


# --- secrets -------------------------------------------------------------------------------------

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ"
    ".SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
)
PRIVATE_KEY = (
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAu1SU1LfVLPHCozMxH2Mo4lgOEePzNm0tRgeLezV6ffAt0gun\n"
    "VTLw7onLRnrq0/IzW7yWR7QkrmBL7jTKEn5u+qKhbwKfBstIs+bMY2Zkp18gnTxK\n"
    "-----END RSA PRIVATE KEY-----"
)


@pytest.mark.parametrize(
    "secret",
    [
        "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCD",
        "sk-proj-Ab3dEf6hIj9kLm2nOp5qRs8tUv1wXy4z_-Ab3dEf6h",
        "AKIAIOSFODNN7EXAMPLE",
        "ghp_" + "a1B2c3D4e5" * 3 + "f6G7h8",
        "gho_" + "Z9y8X7w6V5" * 3 + "u4T3s2",
        "github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789",
        "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx",
        "xoxp-123456789012-abcdefghij",
        "hf_" + "AbCdEfGhIj" * 3 + "KlMn",
        JWT,
        PRIVATE_KEY,
    ],
)
def test_secret_token_is_masked(redactor: PIIRedactor, secret: str) -> None:
    assert redactor.redact(f"use {secret} here") == ("use [SECRET] here", {"secret": 1})


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("api_key=abc123xyz", "api_key=[SECRET]"),
        ("APIKEY: hunter2-key", "APIKEY: [SECRET]"),
        ("Secret = s3cr3t!", "Secret = [SECRET]"),
        ("token:tok_123", "token:[SECRET]"),
        ("PASSWORD=correct-horse", "PASSWORD=[SECRET]"),
        ('{"password": "p@ss word", "user": "bob"}', '{"password": "[SECRET]", "user": "bob"}'),
        ("access_token='abc.def'", "access_token='[SECRET]'"),
        ("client_secret=xyz&grant_type=code", "client_secret=[SECRET]&grant_type=code"),
        ("Authorization: Bearer abc123def456ghi789", "Authorization: Bearer [SECRET]"),
        ("authorization: bearer 0a1b2c3d4e5f.", "authorization: bearer [SECRET]."),
    ],
)
def test_secret_values_are_masked(redactor: PIIRedactor, text: str, masked: str) -> None:
    assert redactor.redact(text) == (masked, {"secret": 1})


@pytest.mark.parametrize(
    "text",
    [
        '{"max_tokens": 256, "eos_token": "</s>", "token_count": 3}',
        "the bearer of bad news",
        "Bearer bonds were popular",
        "sk-learn and sk-short",
        "AKIA1234",
        "hf_short_name",
        "a password is needed",
    ],
)
def test_not_secrets(redactor: PIIRedactor, text: str) -> None:
    assert redactor.redact(text) == (text, {})


def test_secrets_come_first(redactor: PIIRedactor) -> None:
    # The value is a secret, not an e-mail address; the key id is not a phone or card.
    text = "password=alice@example.com key AKIA4111111111111111"
    assert redactor.redact(text) == ("password=[SECRET] key [SECRET]", {"secret": 2})


def test_all_kinds_together(redactor: PIIRedactor) -> None:
    text = (
        "Hi, I'm jane@example.com, +1 (415) 555-0132. Card 4111 1111 1111 1111. "
        "My key is sk-abcdefghijklmnopqrstuvwxyz0123 and bob@example.org knows it."
    )
    masked, counts = redactor.redact(text)
    assert masked == (
        "Hi, I'm [EMAIL], [PHONE]. Card [CREDIT_CARD]. My key is [SECRET] and [EMAIL] knows it."
    )
    assert counts == {"email": 2, "phone": 1, "credit_card": 1, "secret": 1}


# --- options -------------------------------------------------------------------------------------


def test_mask_option() -> None:
    redactor = PIIRedactor(mask="<{kind}>")
    assert redactor.redact("a@example.com 415-555-0132") == (
        "<EMAIL> <PHONE>",
        {"email": 1, "phone": 1},
    )
    fixed = PIIRedactor(mask="***")
    assert fixed.redact("a@example.com") == ("***", {"email": 1})


def test_kinds_option() -> None:
    redactor = PIIRedactor(kinds=["email"])
    text = "a@example.com 415-555-0132 4111111111111111 sk-abcdefghijklmnopqrstuvwxyz0123"
    assert redactor.redact(text) == (
        "[EMAIL] 415-555-0132 4111111111111111 sk-abcdefghijklmnopqrstuvwxyz0123",
        {"email": 1},
    )
    assert PIIRedactor(kinds=["phone", "credit_card"]).kinds == ("credit_card", "phone")
    assert PIIRedactor(kinds=[]).redact(text) == (text, {})
    assert PIIRedactor().kinds == KINDS


def test_without_secrets_the_email_in_a_secret_is_found() -> None:
    redactor = PIIRedactor(kinds=["email", "phone", "credit_card"])
    assert redactor.redact("password=alice@example.com") == ("password=[EMAIL]", {"email": 1})


def test_unknown_option_is_named() -> None:
    options: dict[str, Any] = {"kinds": ["email"], "colour": "red"}
    with pytest.raises(TypeError, match="colour"):
        PIIRedactor(**options)


def test_unknown_kind_is_named() -> None:
    with pytest.raises(ValueError, match="ssn"):
        PIIRedactor(kinds=["email", "ssn"])


@pytest.mark.parametrize("kinds", ["email", [1]])
def test_bad_kinds(kinds: Any) -> None:
    with pytest.raises(ValueError, match="kinds"):
        PIIRedactor(kinds=kinds)


@pytest.mark.parametrize("mask", ["[{kindd}]", "[{0}]", "[{kind", 7])
def test_bad_mask(mask: Any) -> None:
    with pytest.raises(ValueError, match="mask"):
        PIIRedactor(mask=mask)


# --- records -------------------------------------------------------------------------------------


def test_redact_record_input_covers_every_text_field(redactor: PIIRedactor) -> None:
    data: dict[str, Any] = {
        "record_id": "r-1",
        "flow": "support",
        "instruction": "Email jane@example.com",
        "context": "Her phone is 415-555-0132.",
        "messages": [
            {"role": "system", "content": "key sk-abcdefghijklmnopqrstuvwxyz0123"},
            {"role": "user", "content": "card 4111 1111 1111 1111"},
        ],
        "responses": [
            {"text": "I wrote to jane@example.com", "model": "m@example.com", "source": "app"},
        ],
        "metadata": {
            "user": "bob@example.org",
            "count": 3,
            "nested": {"notes": ["call +44 20 7946 0958", 5], "ok": "fine"},
        },
        "tags": ["vip", "owner:ann@example.com"],
    }
    original = copy.deepcopy(data)
    result, totals = redact_record_input(data, redactor)

    assert data == original  # the input is untouched
    assert result["instruction"] == "Email [EMAIL]"
    assert result["context"] == "Her phone is [PHONE]."
    assert [m["content"] for m in result["messages"]] == ["key [SECRET]", "card [CREDIT_CARD]"]
    assert result["messages"][0]["role"] == "system"
    assert result["responses"] == [
        {"text": "I wrote to [EMAIL]", "model": "m@example.com", "source": "app"}
    ]
    assert result["metadata"] == {
        "user": "[EMAIL]",
        "count": 3,
        "nested": {"notes": ["call [PHONE]", 5], "ok": "fine"},
    }
    assert result["tags"] == ["vip", "owner:[EMAIL]"]
    assert result["record_id"] == "r-1" and result["flow"] == "support"
    assert totals == {"email": 4, "phone": 2, "secret": 1, "credit_card": 1}

    # Nothing in the result is shared with the input.
    result["messages"][0]["content"] = "changed"
    result["metadata"]["nested"]["notes"].append("x")
    assert data == original


def test_redact_record_input_tolerates_missing_and_odd_fields(redactor: PIIRedactor) -> None:
    data: dict[str, Any] = {
        "instruction": None,
        "messages": "not a list",
        "responses": [None, {"model": "m"}],
        "metadata": None,
    }
    result, totals = redact_record_input(data, redactor)
    assert result == data and result is not data
    assert totals == {}
    assert redact_record_input({}, redactor) == ({}, {})


def test_redact_record_input_takes_any_redactor() -> None:
    class Upper(Redactor):
        def redact(self, text: str) -> tuple[str, dict[str, int]]:
            return text.upper(), {"upper": 1}

    result, totals = redact_record_input({"instruction": "hi", "tags": ["a", "b"]}, Upper())
    assert result == {"instruction": "HI", "tags": ["A", "B"]}
    assert totals == {"upper": 3}
