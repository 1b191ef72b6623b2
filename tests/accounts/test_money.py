"""Money typed by staff: a point for decimals, commas only between thousands, never a guess."""

import pytest

from accounts.money import AmountError, format_money, to_decimal_string, to_minor_units

CEILING = 10**13


@pytest.mark.parametrize(
    "typed, currency, minor",
    [
        ("12.50", "EUR", 1250),
        ("1,250.00", "EUR", 125_000),
        ("12,345", "EUR", 1_234_500),
        ("1,234,567.89", "EUR", 123_456_789),
        ("12,345", "JPY", 12_345),
        ("1250.500", "KWD", 1_250_500),
        ("0.005", "BHD", 5),
        ("  7.5 ", "USD", 750),
    ],
)
def test_a_point_is_the_decimal_separator_and_a_comma_may_separate_thousands(typed, currency, minor):
    assert to_minor_units(typed, currency, ceiling=CEILING) == minor


@pytest.mark.parametrize(
    "typed, currency",
    [("12,50", "EUR"), ("0,05", "EUR"), ("1,5", "EUR"), ("1,2,3", "EUR"), ("1,2345", "EUR"), (",123", "EUR"),
     ("123,", "EUR"), ("1,5", "JPY"), ("1,250.0,0", "EUR")],
)  # fmt: skip
def test_a_comma_that_could_be_a_decimal_comma_is_refused_repeating_what_was_typed(typed, currency):
    with pytest.raises(AmountError) as refused:
        to_minor_units(typed, currency, ceiling=CEILING)
    message = str(refused.value)
    assert f"“{typed}”" in message and "commas only between thousands" in message


@pytest.mark.parametrize("typed", ["1,250", "12,345", "1,250.500"])
@pytest.mark.parametrize("currency", ["KWD", "BHD"])
def test_a_three_decimal_currency_takes_no_comma_at_all(typed, currency):
    with pytest.raises(
        AmountError, match="could be read as a decimal separator. Use a point for decimals and no commas"
    ):
        to_minor_units(typed, currency, ceiling=CEILING)


@pytest.mark.parametrize(
    "typed, currency, message",
    [
        ("12.505", "EUR", "EUR has 2 decimal places; “12.505” has more."),
        ("12.5", "JPY", "JPY has no decimal places; “12.5” has some."),
        ("-5", "EUR", "“-5” is negative"),
        ("1_000", "EUR", "“1_000” is not an amount"),
        ("1 250", "EUR", "“1 250” is not an amount"),
        ("1e5", "EUR", "“1e5” is not an amount"),
        ("٣", "EUR", "“٣” is not an amount"),
        ("", "EUR", "Enter an amount."),
        ("0", "EUR", "greater than zero"),
        ("100,000,000,000", "EUR", "“100,000,000,000” is too large: the amount must be below 100,000,000,000.00 EUR"),
    ],
)
def test_other_refusals_say_what_is_wrong(typed, currency, message):
    with pytest.raises(AmountError) as refused:
        to_minor_units(typed, currency, ceiling=CEILING)
    assert message in str(refused.value)


def test_what_the_bank_prints_reads_back_as_the_same_amount():
    for minor, currency in [(125_050, "EUR"), (12_345, "JPY")]:
        assert to_minor_units(format_money(minor, currency).split()[0], currency, ceiling=CEILING) == minor
    for minor, currency in [(125_050, "EUR"), (12_345, "JPY"), (1_250_500, "KWD")]:
        assert to_minor_units(to_decimal_string(minor, currency), currency, ceiling=CEILING) == minor
