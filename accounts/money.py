"""Money as staff type it and read it: decimal strings <-> integer minor units.

Exact decimal arithmetic only; a float never touches an amount.
"""

import re
from decimal import Decimal

from accounts.domain import CURRENCIES


_AMOUNT = re.compile(r"\d+(\.\d*)?|\.\d+", re.ASCII)


class AmountError(ValueError):
    """The text is not an amount this currency can hold; the message says why."""


def decimals(currency: str) -> int:
    return CURRENCIES.get(currency, 2)


def to_minor_units(text: str, currency: str, *, ceiling: int, allow_zero: bool = False) -> int:
    """'12.50' in EUR -> 1250. Refuses more decimals than the currency has, signs, and absurd sizes."""
    places = decimals(currency)
    cleaned = (text or "").strip().replace(",", "").replace("_", "")
    if not cleaned:
        raise AmountError("Enter an amount.")
    if len(cleaned) > 40:
        raise AmountError("That amount is far too large.")
    if cleaned.startswith("-"):
        raise AmountError("The amount cannot be negative.")
    if not _AMOUNT.fullmatch(cleaned):
        raise AmountError(f"“{text.strip()[:40]}” is not an amount. Use digits and a decimal point, like 12.50.")
    value = Decimal(cleaned)
    if value.as_tuple().exponent < -places:
        raise AmountError(
            f"{currency} has {places} decimal place{'s' if places != 1 else ''}; "
            f"{cleaned} has more." if places else f"{currency} has no decimal places; enter a whole amount."
        )
    if value == 0 and not allow_zero:
        raise AmountError("The amount must be greater than zero.")
    minor = int(value.scaleb(places))
    if minor >= ceiling:
        raise AmountError(f"The amount must be below {format_money(ceiling, currency)}.")
    return minor


def format_money(minor: int, currency: str) -> str:
    """1250, 'EUR' -> '12.50 EUR' (with thousands separators)."""
    places = decimals(currency)
    return f"{Decimal(minor).scaleb(-places):,.{places}f} {currency}"


def to_decimal_string(minor: int, currency: str) -> str:
    """1250, 'EUR' -> '12.50': plain, for spreadsheets and exports."""
    places = decimals(currency)
    return f"{Decimal(minor).scaleb(-places):.{places}f}"
