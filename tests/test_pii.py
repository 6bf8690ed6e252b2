"""PII detectors: what they flag, what they must leave alone, and that the fast prefilter never hides a hit."""

import json
import random
from collections import Counter
from pathlib import Path

import pytest

from registry.pii import SEPARATOR, PiiHit, find_pii, luhn_valid, pii_candidates, scan_pii, text_batch


def kinds(text: str) -> list[str]:
    return [hit.kind for hit in find_pii(text)]


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Write to john.doe@acme-mail.com today.", "j***@acme-mail.com"),
        ("cc: jane+ads@mail.example.co.uk.", "j***@mail.example.co.uk"),
    ],
)
def test_emails_are_found_and_masked(text: str, masked: str) -> None:
    assert find_pii(text) == [PiiHit("email", masked)]


@pytest.mark.parametrize("text", ["@property def name(self)", "ping @analyst in chat", "user@localhost", "a@b"])
def test_at_signs_that_are_not_emails(text: str) -> None:
    assert find_pii(text) == []


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Call (415) 867-5334 now", "(***) ***-**34"),
        ("Call 415-867-5334.", "***-***-**34"),
        ("Call 415.867.5334", "***.***.**34"),
        ("Call 415 867 5334", "*** *** **34"),
        ("Call 1-800-867-5399", "*-***-***-**99"),
        ("Call +1 (415) 867-5334", "+* (***) ***-**34"),
        ("UK desk +44 20 7946 0958", "+** ** **** **58"),
        ("Paris +33 1 23 45 67 89", "+** * ** ** ** 89"),
    ],
)
def test_phone_numbers_us_and_international(text: str, masked: str) -> None:
    assert find_pii(text) == [PiiHit("phone", masked)]


@pytest.mark.parametrize(
    "text",
    [
        "order id 5551234567",  # plain digits: an id, not a phone
        "ts 1700000000 and 1700000000123",  # unix timestamps
        "cost_micros 4500000000",
        "on 2023-01-15 at 10:30",
        "price $1,234,567.89",
        "ssn-like 123-45-6789",
        "scores 2019 2020 2021",
        "472547338 + 960397912423686",  # arithmetic, not an international number
        "+1000 users",
    ],
)
def test_plain_numbers_are_not_phones(text: str) -> None:
    assert "phone" not in kinds(text)


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("Card 4111 1111 1111 1111 expires", "**** **** **** 1111"),
        ("Card 4111-1111-1111-1111", "****-****-****-1111"),
        ("Card 4111111111111111.", "************1111"),
        ("Amex 3782-822463-10005", "****-******-*0005"),
        ("MC 5555 5555 5555 4444", "**** **** **** 4444"),
    ],
)
def test_luhn_valid_cards_are_found(text: str, masked: str) -> None:
    assert find_pii(text) == [PiiHit("card", masked)]


@pytest.mark.parametrize(
    "text",
    [
        "order 4111111111111112",  # 16 digits, Luhn fails
        "id 1234567890123456",  # no issuer starts with 1
        "275.43397884615385 is the quotient",  # digits after a decimal point
    ],
)
def test_numbers_that_are_not_cards(text: str) -> None:
    assert "card" not in kinds(text)


def test_luhn() -> None:
    assert luhn_valid("4111111111111111")
    assert luhn_valid("378282246310005")
    assert not luhn_valid("4111111111111112")


@pytest.mark.parametrize(
    ("text", "found"),
    [
        ("server 192.168.1.20.", ["ipv4"]),
        ("dns 1.1.1.1", ["ipv4"]),
        ("bad 256.1.1.1", []),
        ("version 1.2.3.4.5", []),
        ("pi is 3.14159", []),
    ],
)
def test_ipv4(text: str, found: list[str]) -> None:
    assert kinds(text) == found


def test_ip_is_masked() -> None:
    assert find_pii("from 10.24.108.7")[0].value_masked == "10.24.*.*"


def test_non_ascii_text() -> None:
    assert kinds("Téléphone : +33 1 23 45 67 89, courriel élodie@exemple.fr") == ["email", "phone"]


def test_one_text_can_hold_several_kinds() -> None:
    text = "Mail a@acme-mail.com, call 415-867-5334, card 4111 1111 1111 1111, host 10.0.0.1"
    assert sorted(kinds(text)) == ["card", "email", "ipv4", "phone"]


def test_masks_never_repeat_the_value() -> None:
    for hit in find_pii("john.doe@acme-mail.com 415-867-5334 4111 1111 1111 1111"):
        assert "john.doe" not in hit.value_masked and "867-5334" not in hit.value_masked
        assert "4111 1111 1111" not in hit.value_masked


def test_prefilter_never_drops_a_text_that_holds_pii() -> None:
    """pii_candidates may let extra texts through, but never one where the full scan finds something."""
    rng = random.Random(3)
    pieces = [
        "call 415-867-5334",
        "(212) 867 0188",
        "+49 30 1234567",
        "card 4111 1111 1111 1111",
        "5555555555554444",
        "ip 10.0.0.1",
        "255.255.255.0",
        "mail x.y@example.org",
        "in 2019",
        "3.5 stars",
        "12 items",
        "v1.2.3",
        "1,234,567",
        "ordinary words",
        "Punctuation, here!",
        "\n\n",
        "  ",
        "ünïcode text",
        "{{name}}",
        "+5 points",
        "1.1.1.1",
        "(555) 123-4567",
        "4111-1111-1111-1111",
        "call 1-800-867-5399 now",
        "v10.2",
        "2019-2024",
    ]
    texts = [" ".join(rng.choices(pieces, k=rng.randint(1, 6))) for _ in range(3000)]
    candidates = set(pii_candidates(text_batch(texts)))
    missed = [text for index, text in enumerate(texts) if scan_pii(text) and index not in candidates]
    assert missed == []
    assert len(candidates) < len(texts)


def test_prefilter_clears_ordinary_numbers() -> None:
    """Years, prices, ids, decimals and dates are common in training text; they must not all go to the slow scan."""
    rng = random.Random(5)
    pieces = [
        "Sales grew 7% in 2019 across stores.",
        "The price is $45.99 per unit.",
        "Order 88213 shipped on time.",
        "Shoppers rated it 3.5 stars.",
        "It launched on 2024-03-01 nationwide.",
        "We sold 1,200 units last week.",
        "Keep the copy short and clear.",
        "Version 2.1 of the planner adds a forecast.",
    ]
    texts = [" ".join(rng.choices(pieces, k=rng.randint(2, 8))) for _ in range(2000)]
    assert len(pii_candidates(text_batch(texts))) < len(texts) / 10


def test_batch_rows_stay_apart() -> None:
    """A number split across two texts is not a phone; a separator character inside a text changes nothing."""
    batch = text_batch(["call 415-867", "-5334 later", f"b{SEPARATOR}c", "call 415-867-5334"])
    assert pii_candidates(batch) == [3]


LABELLED = Path(__file__).parent / "data" / "pii_labelled.jsonl"


def precision_recall(rows: list[dict]) -> tuple[float, float]:
    """Over hits: a found kind a text was labelled with is a true positive; extra ones false, missing ones missed."""
    true = false = missed = 0
    for row in rows:
        want, got = Counter(row["pii"]), Counter(hit.kind for hit in find_pii(row["text"]))
        both = want & got
        true, false, missed = (
            true + sum(both.values()),
            false + sum((got - both).values()),
            missed + sum((want - both).values()),
        )
    return true / (true + false), true / (true + missed)


def test_precision_and_recall_on_the_labelled_set() -> None:
    """Real-looking personal data against example domains, fictional numbers, URLs' user-info and arithmetic.

    Measured: precision 0.938, recall 0.909 (before the reserved-name, user-info and arithmetic rules: 0.588 and
    0.909). The known misses and false alarms are listed below so a change that moves them is noticed.
    """
    rows = [json.loads(line) for line in LABELLED.read_text().splitlines()]
    precision, recall = precision_recall(rows)
    assert (round(precision, 3), round(recall, 3)) == (0.938, 0.909)
    misses = [row["text"] for row in rows if Counter(row["pii"]) != Counter(h.kind for h in find_pii(row["text"]))]
    assert misses == [
        "My number is 4158675309, text me.",  # a plain digit run is an id as often as a phone
        "Write to jane dot doe at gmail dot com.",  # spelled-out addresses
        "Reach the buyer at 020 7123 4567 (London).",  # national formats outside North America without '+'
        "Upgrade the kiosk firmware to 10.2.0.14 tonight.",  # four-part versions look like IPv4
        "Device IMEI 490154203237518 registered.",  # IMEIs are Luhn numbers too
    ]


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("maria.gonzalez@gmail.com", "email address"),
        ("(415) 867-5309", "US phone number"),
        ("+49 30 901820", "international phone number"),
        ("4111 1111 1111 1111", "payment card number (issuer prefix and Luhn checksum)"),
        ("10.24.108.7", "IPv4 address"),
    ],
)
def test_each_hit_names_its_rule(text: str, rule: str) -> None:
    (hit,) = find_pii(text)
    assert f"(rule: {rule}" in hit.description


@pytest.mark.parametrize(
    "text",
    [
        "Send it to your_email@example.com",  # RFC 2606
        "staging uses qa@shop.test and admin@localhost",  # RFC 6761
        "bounce@mail.invalid or docs@sub.example",
        "ftp://user:pass@files.acme.com/report.csv",  # a URL's user-info
        "Call (212) 555-0147",  # 555-0100..0199 are fictional
        "Generate a phone number: (555) 123-4567",  # area code 555 is nobody's
        "What is 4532015112830366 + 12?",  # an operand
        "256626720691 + 1646615806005 =\n\nThe result is:\n\n1903242526696",  # the result of a long sum
        "listen on 127.0.0.1; docs use 192.0.2.10",  # loopback and RFC 5737
    ],
)
def test_reserved_names_numbers_urls_and_arithmetic_are_not_personal_data(text: str) -> None:
    assert find_pii(text) == []
