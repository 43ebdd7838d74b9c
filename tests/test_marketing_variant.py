"""`variant.toml` validation: every lever is a knob the offline proposer can edit, and bad values are refused."""

from __future__ import annotations

import re

import pytest

from ledgerlab.core.knobs import read_knob, write_knob
from ledgerlab.domains.marketing.domain import MarketingDomain
from ledgerlab.domains.marketing.variant import KNOBS, VARIANT_FILE, template_text, variant_from_files
from ledgerlab.errors import InvalidCandidate

DOMAIN = MarketingDomain()
BASE = DOMAIN.baseline()


def _set(line: str) -> dict[str, str]:
    """The baseline with one `name = value` line replaced (or added when the name is new)."""
    name = line.split("=")[0].strip()
    text, count = re.subn(rf"^{name} = .*$", line, BASE[VARIANT_FILE], flags=re.M)
    return {VARIANT_FILE: text if count else text + line + "\n"}


def test_baseline_is_valid_and_documented() -> None:
    DOMAIN.validate(BASE)
    assert BASE == {VARIANT_FILE: template_text()}
    for knob in KNOBS:
        assert f"`{knob.name}`" in DOMAIN.description


def test_every_knob_reads_and_writes_through_core_knobs() -> None:
    for knob in KNOBS:
        assert read_knob(BASE, knob) is not None
        values = list(knob.choices) if knob.choices else [knob.low, knob.high, (knob.low + knob.high) / 2]
        for value in values:
            value = int(value) if knob.kind == "int" else value
            files = write_knob(BASE, knob, value)
            DOMAIN.validate(files)
            assert getattr(variant_from_files(files), knob.name) == value
            assert read_knob(files, knob) == value


@pytest.mark.parametrize(("line", "reason"), [
    ('color_scheme = "dark"', "unknown key"),
    ("price = \"cheap\"", "must be a number"),
    ("price = 5.0", "outside [19, 99]"),
    ("price = nan", "outside"),
    ("price = inf", "outside"),
    ("discount_pct = 60", "outside [0, 50]"),
    ("discount_pct = 10.5", "must be an integer"),
    ("discount_pct = true", "must be an integer"),
    ("form_fields = 1", "outside [2, 12]"),
    ("free_shipping = 1", "must be true or false"),
    ('free_shipping = "yes"', "must be true or false"),
    ('headline = "Buy our stuff"', "is not one of"),
    ('social_proof = "celebrities"', "is not one of"),
    ("cta_color = 3", "is not one of"),
    ("[extra]\nkey = 1", "unknown key"),
    ("price = ", "not valid TOML"),
])
def test_bad_values_are_refused_with_a_reason(line: str, reason: str) -> None:
    with pytest.raises(InvalidCandidate, match=re.escape(reason)):
        DOMAIN.validate(_set(line))


def test_missing_key_is_refused() -> None:
    text = re.sub(r"^trust_badges = .*\n", "", BASE[VARIANT_FILE], flags=re.M)
    with pytest.raises(InvalidCandidate, match="missing key.*trust_badges"):
        DOMAIN.validate({VARIANT_FILE: text})


def test_other_files_are_refused() -> None:
    with pytest.raises(InvalidCandidate, match="only variant.toml"):
        DOMAIN.validate({**BASE, "notes.md": "hi"})
    with pytest.raises(InvalidCandidate, match="no variant.toml"):
        DOMAIN.validate({})
