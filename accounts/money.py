"""Money as staff type it and read it: decimal strings <-> integer minor units.

Exact decimal arithmetic only; a float never touches an amount.

A point is the only decimal separator. A comma is accepted only as a
thousands separator between groups of three digits ("1,250.00", "12,345"),
and never where it could be a decimal comma: "12,50" or "1,5" is refused,
not read as 1250 or 15, and a currency with three decimal places takes no
comma at all ("1,250" in KWD could mean 1.250).
"""

import re
from decimal import Decimal

from accounts.domain import decimals, format_money

_AMOUNT = re.compile(r"(?:\d+|\d{1,3}(?:,\d{3})+)(?:\.\d*)?|\.\d+", re.ASCII)


class AmountError(ValueError):
    """The text is not an amount this currency can hold; the message says why."""


def _how_to_write(currency: str) -> str:
    places = decimals(currency)
    if places == 3:
        return "Use a point for decimals and no commas, like 1250.500."
    if places == 0:
        return f"{currency} has no decimals: use digits, with commas only between thousands, like 1,250."
    return "Use a point for decimals and commas only between thousands, like 1,250.00."


def to_minor_units(text: str, currency: str, *, ceiling: int, allow_zero: bool = False) -> int:
    """'1,250.50' in EUR -> 125050. Refuses decimal commas, extra decimals, signs and absurd sizes.

    Every refusal repeats what was typed and says how to write it.
    """
    places = decimals(currency)
    typed = (text or "").strip()
    shown = f"“{typed[:40]}”"
    if not typed:
        raise AmountError("Enter an amount.")
    if len(typed) > 40:
        raise AmountError("That amount is far too large.")
    if typed.startswith("-"):
        raise AmountError(f"{shown} is negative; enter the amount without a sign.")
    if "," in typed and places == 3:
        raise AmountError(
            f"{shown} has a comma, which in {currency} (three decimal places) could be read as a decimal "
            f"separator. {_how_to_write(currency)}"
        )
    if not _AMOUNT.fullmatch(typed):
        if "," in typed:
            raise AmountError(f"{shown} has a comma that is not a thousands separator. {_how_to_write(currency)}")
        raise AmountError(f"{shown} is not an amount. {_how_to_write(currency)}")
    value = Decimal(typed.replace(",", ""))
    exponent = value.as_tuple().exponent
    assert isinstance(exponent, int), "_AMOUNT matched, so the value is finite (no NaN or Infinity exponent)"
    if exponent < -places:
        raise AmountError(
            f"{currency} has {places} decimal place{'s' if places != 1 else ''}; {shown} has more."
            if places
            else f"{currency} has no decimal places; {shown} has some. Enter a whole amount."
        )
    if value == 0 and not allow_zero:
        raise AmountError("The amount must be greater than zero.")
    minor = int(value.scaleb(places))
    if minor >= ceiling:
        raise AmountError(f"{shown} is too large: the amount must be below {format_money(ceiling, currency)}.")
    return minor


def threshold(per_currency: dict[str, int], others: int, currency: str) -> int:
    """A per-currency threshold of the settings (major units, like REVIEW_AT and APPROVAL_AT) in minor units."""
    scale: int = 10 ** decimals(currency)
    return per_currency.get(currency, others) * scale


def to_decimal_string(minor: int | Decimal, currency: str) -> str:
    """1250, 'EUR' -> '12.50': plain, for spreadsheets and exports.

    Minor units come as an int, or as a whole Decimal from the daily statements'
    NUMERIC turnover columns.
    """
    places = decimals(currency)
    return f"{Decimal(minor).scaleb(-places):.{places}f}"
