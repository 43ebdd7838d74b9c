"""The landing-page artifact `variant.toml`: its levers (as Knobs), parsing and validation."""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields
from functools import lru_cache
from pathlib import Path
from typing import Any

from ledgerlab.core.protocols import Knob
from ledgerlab.errors import InvalidCandidate

VARIANT_FILE = "variant.toml"

HEADLINES = (
    "The smarter way to shop",
    "Everything you need, delivered tomorrow",
    "Join 50,000 happy customers",
    "Save 20 minutes on every order",
    "Premium quality, fair prices",
    "Last chance: shop before it is gone",
)


def _choice(name: str, choices: tuple[Any, ...], help: str) -> Knob:
    return Knob(name=name, file=VARIANT_FILE, kind="choice", choices=choices, help=help)


def _flag(name: str, help: str) -> Knob:
    return Knob(name=name, file=VARIANT_FILE, kind="bool", choices=(False, True), help=help)


# The order here is the order of the lines in the template and of the Variant fields.
KNOBS: tuple[Knob, ...] = (
    _choice("headline", HEADLINES, "the hero headline, one of the written options"),
    _choice("cta_text", ("Buy now", "Get started", "Add to cart", "Claim my offer", "Learn more"),
            "the label of the call-to-action button"),
    _choice("cta_color", ("blue", "green", "orange", "red", "gray"), "the colour of the call-to-action button"),
    _choice("hero_image", ("product", "lifestyle", "people", "illustration", "video"),
            "what the hero area shows (video autoplays)"),
    Knob(name="price", file=VARIANT_FILE, kind="float", low=19.0, high=99.0,
         help="list price in dollars; lower converts more but earns less per order"),
    Knob(name="discount_pct", file=VARIANT_FILE, kind="int", low=0, high=50,
         help="advertised discount in percent off the list price"),
    _flag("free_shipping", "ship for free"),
    _choice("social_proof", ("none", "reviews", "testimonials", "logos", "press", "user_count"),
            "the social-proof block under the hero"),
    Knob(name="form_fields", file=VARIANT_FILE, kind="int", low=2, high=12,
         help="fields in the checkout form"),
    _choice("urgency_banner", ("none", "countdown", "low_stock", "limited_offer"), "a banner that creates urgency"),
    _flag("trust_badges", "show payment and security badges"),
    _choice("page_length", ("short", "medium", "long"), "how much copy the page has"),
    _flag("guest_checkout", "allow checkout without an account"),
    _flag("chat_widget", "show a live-chat widget"),
    _flag("exit_popup", "show a pop-up when the visitor moves to leave"),
)
KNOBS_BY_NAME: dict[str, Knob] = {knob.name: knob for knob in KNOBS}


@dataclass(frozen=True)
class Variant:
    """One landing page: a value for every lever."""

    headline: str
    cta_text: str
    cta_color: str
    hero_image: str
    price: float
    discount_pct: int
    free_shipping: bool
    social_proof: str
    form_fields: int
    urgency_banner: str
    trust_badges: bool
    page_length: str
    guest_checkout: bool
    chat_widget: bool
    exit_popup: bool

    @property
    def effective_price(self) -> float:
        """What a buyer pays per unit after the discount."""
        return self.price * (1.0 - self.discount_pct / 100.0)

    def to_dict(self) -> dict[str, Any]:
        """The levers as a JSON-ready dict (the wire format of the market service)."""
        return asdict(self)


assert [f.name for f in fields(Variant)] == [k.name for k in KNOBS]  # one schema, two views


# ---------------------------------------------------------------------------------------- validation


def check_value(knob: Knob, value: Any) -> Any:
    """The value normalised to the knob's type; InvalidCandidate when it has the wrong type or range."""
    where = f"{knob.file}: {knob.name}"
    if knob.kind == "bool":
        if not isinstance(value, bool):
            raise InvalidCandidate(f"{where} must be true or false, got {value!r}")
        return value
    if knob.kind == "choice":
        if not isinstance(value, str) or value not in knob.choices:
            options = ", ".join(repr(c) for c in knob.choices)
            raise InvalidCandidate(f"{where} = {value!r} is not one of: {options}")
        return value
    # int and float: TOML ints are accepted for floats (knob editors may write `49` for 49.0).
    numeric = (int, float) if knob.kind == "float" else (int,)
    if isinstance(value, bool) or not isinstance(value, numeric):
        raise InvalidCandidate(f"{where} must be {'a number' if knob.kind == 'float' else 'an integer'}, "
                               f"got {value!r}")
    if not math.isfinite(value) or not (knob.low <= value <= knob.high):  # type: ignore[operator]
        raise InvalidCandidate(f"{where} = {value!r} is outside [{knob.low:g}, {knob.high:g}]")
    return float(value) if knob.kind == "float" else int(value)


def variant_from_dict(data: Mapping[str, Any]) -> Variant:
    """A Variant from a dict of levers; InvalidCandidate for an unknown, missing or bad lever."""
    if not isinstance(data, Mapping):
        raise InvalidCandidate(f"a variant must be a table of levers, got {type(data).__name__}")
    unknown = sorted(set(data) - set(KNOBS_BY_NAME))
    if unknown:
        raise InvalidCandidate(f"{VARIANT_FILE}: unknown key(s) {', '.join(unknown)}; "
                               f"the levers are: {', '.join(KNOBS_BY_NAME)}")
    missing = [name for name in KNOBS_BY_NAME if name not in data]
    if missing:
        raise InvalidCandidate(f"{VARIANT_FILE}: missing key(s) {', '.join(missing)}")
    return Variant(**{name: check_value(knob, data[name]) for name, knob in KNOBS_BY_NAME.items()})


def parse_variant(text: str) -> Variant:
    """A Variant from the text of `variant.toml`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InvalidCandidate(f"{VARIANT_FILE} is not valid TOML: {exc}") from None
    return variant_from_dict(data)


def variant_from_files(files: Mapping[str, str]) -> Variant:
    """The Variant of an artifact; InvalidCandidate unless it is exactly one valid `variant.toml`."""
    extra = sorted(set(files) - {VARIANT_FILE})
    if extra:
        raise InvalidCandidate(f"only {VARIANT_FILE} may exist in the artifact; found {', '.join(extra)}")
    if VARIANT_FILE not in files:
        raise InvalidCandidate(f"the artifact has no {VARIANT_FILE}")
    return parse_variant(files[VARIANT_FILE])


def as_variant(value: Variant | Mapping[str, Any]) -> Variant:
    """Accept a Variant, an artifact ({"variant.toml": text}) or a dict of levers."""
    if isinstance(value, Variant):
        return value
    if isinstance(value, Mapping) and VARIANT_FILE in value and isinstance(value[VARIANT_FILE], str):
        return variant_from_files(value)
    return variant_from_dict(value)


def template_text() -> str:
    """The baseline `variant.toml` shipped with the domain."""
    return (Path(__file__).parent / "template" / VARIANT_FILE).read_text(encoding="utf-8")


@lru_cache(maxsize=1)
def template_variant() -> Variant:
    """The baseline page as a Variant."""
    return parse_variant(template_text())
