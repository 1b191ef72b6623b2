"""Staff forms. They turn typed text into service arguments; the rules stay in the domain.

Every command form carries an idempotency key, which the view makes from the
token in the page's address (a double click, a resubmitted POST or a submit
after Back then stores one event), and the account version the member of
staff was looking at (to tell them if it moved).
"""

import datetime
import uuid
from collections.abc import Callable
from typing import TypeVar, cast

from django import forms
from django.conf import settings
from django.contrib.auth.forms import AuthenticationForm
from django.core.validators import MaxLengthValidator

from accounts import selectors
from accounts.approvals import COMMAND_NAMES, STATES
from accounts.domain import CURRENCIES, MAX_OWNER_LENGTH, MAX_TEXT_LENGTH, STATUSES
from accounts.money import AmountError, decimals, to_minor_units
from eventstore.models import MAX_KEY_LENGTH


class CommandForm(forms.Form):
    idempotency_key = forms.CharField(widget=forms.HiddenInput, max_length=MAX_KEY_LENGTH)


class AccountCommandForm(CommandForm):
    """A command on one account, of a known currency, at a known version."""

    expected_version = forms.IntegerField(widget=forms.HiddenInput, min_value=0, max_value=2**31 - 1)

    def __init__(self, *args, account, **kwargs):
        self.account = account
        kwargs.setdefault("initial", {}).setdefault("expected_version", account.version)
        super().__init__(*args, **kwargs)
        if "amount" in self.fields:
            places = decimals(account.currency)
            self.fields["amount"].help_text = f"In {account.currency}, up to {places} decimal places."
            self.fields["amount"].widget.attrs.update(
                {"inputmode": "decimal", "placeholder": "0." + "0" * places if places else "0", "autocomplete": "off"}
            )

    def clean_amount(self):
        try:
            return to_minor_units(
                self.cleaned_data["amount"], self.account.currency, ceiling=settings.ACCOUNT_AMOUNT_CEILING
            )
        except AmountError as error:
            raise forms.ValidationError(str(error)) from None


def _text(label, max_length=MAX_TEXT_LENGTH, **kwargs):
    return forms.CharField(label=label, max_length=max_length, strip=True, **kwargs)


class DepositForm(AccountCommandForm):
    amount = forms.CharField(max_length=40)
    source = _text("Source", help_text="Where the money comes from: cash, cheque, salary…")


class WithdrawForm(AccountCommandForm):
    amount = forms.CharField(max_length=40)
    reason = _text("Reason")


class TransferForm(AccountCommandForm):
    to_account = forms.CharField(
        label="To account", max_length=200, strip=True,
        help_text="The recipient's name (any part, any order), or the first 6 or more characters of the account id.",
    )  # fmt: skip
    amount = forms.CharField(max_length=40)
    reference = _text("Reference")

    CHOICES_SHOWN = 10

    def clean_to_account(self) -> uuid.UUID:
        """The recipient: an account id, or the one account a name or an id's start finds. When several
        match, the field becomes a chooser of them (the page shows it; nothing is sent until one is picked)."""
        typed = self.cleaned_data["to_account"]
        try:
            return uuid.UUID(typed)
        except ValueError:
            pass
        found = selectors.recipients(typed, currency=self.account.currency, besides=self.account.id,
                                     limit=self.CHOICES_SHOWN + 1)  # fmt: skip
        if len(found) == 1:
            return found[0].account_id
        if not found:
            raise forms.ValidationError(
                f"No other active {self.account.currency} account matches “{typed[:60]}”. "
                "Type part of the owner's name, or the start of the account id."
            )
        shown = found[: self.CHOICES_SHOWN]
        self.fields["to_account"].widget = forms.RadioSelect(
            choices=[(str(a.account_id), f"{a.owner} · {str(a.account_id)[:8]}… · {a.currency}") for a in shown]
        )
        more = " (the first ten; type more of the name to narrow it)" if len(found) > self.CHOICES_SHOWN else ""
        raise forms.ValidationError(f"Several accounts match “{typed[:60]}”{more}: choose the recipient.")


class ReasonForm(AccountCommandForm):
    reason = _text("Reason")


class DecisionForm(CommandForm):
    """Approve a request: nothing to fill in but the key that makes a double click harmless."""


class RequestReasonForm(CommandForm):
    """Reject a request (a checker) or cancel it (its maker), saying why."""

    reason = _text("Reason")


class ApprovalFilterForm(forms.Form):
    state = forms.ChoiceField(required=False, choices=[("", "Any state")] + [(s, s.title()) for s in STATES])
    command = forms.ChoiceField(required=False, choices=[("", "Any command")] + list(COMMAND_NAMES.items()))
    maker = forms.CharField(required=False, max_length=150, widget=forms.TextInput(attrs={"list": "makers"}),
                            help_text="Who asked: type or pick a name.")  # fmt: skip
    account = forms.UUIDField(required=False, help_text="The account paying, or receiving a transfer.")
    after = forms.CharField(required=False, max_length=120, widget=forms.HiddenInput)

    def clean_after(self) -> selectors.ApprovalCursor | None:
        return _cursor(self.cleaned_data.get("after"), selectors.ApprovalCursor.parse)


class OpenAccountForm(CommandForm):
    owner = _text("Owner", max_length=MAX_OWNER_LENGTH)
    currency = forms.ChoiceField(choices=[(code, code) for code in sorted(CURRENCIES)])
    initial_deposit = forms.CharField(label="Opening deposit", max_length=40, initial="0")

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("initial", {}).setdefault("currency", settings.DEFAULT_CURRENCY)
        super().__init__(*args, **kwargs)

    def clean(self):
        super().clean()
        cleaned = self.cleaned_data
        if "initial_deposit" in cleaned and "currency" in cleaned:
            try:
                cleaned["initial_deposit"] = to_minor_units(
                    cleaned["initial_deposit"], cleaned["currency"],
                    ceiling=settings.ACCOUNT_AMOUNT_CEILING, allow_zero=True,
                )  # fmt: skip
            except AmountError as error:
                self.add_error("initial_deposit", str(error))
        return cleaned


MOMENT_FORMAT = "%Y-%m-%d %H:%M:%S"  # how the pages show a moment, in UTC


class MomentInput(forms.TextInput):
    """A moment typed as the pages show one (2026-11-27 14:05:09, UTC): not only a browser's local-time picker."""

    def __init__(self, attrs=None):
        super().__init__({"placeholder": "2026-11-27 14:05:09", "autocomplete": "off", **(attrs or {})})
        self.format = MOMENT_FORMAT


class MomentField(forms.DateTimeField):
    """A moment in time, ISO 8601, returned in UTC (UTC too when typed without an offset).

    `to_the_end_of_the_second`: a moment typed to the second, as the pages show one, means the
    whole of that second (an event at 14:05:09.4 is in "as of 14:05:09").

    Normalising to UTC here means the database never sees an offset it cannot
    store (PostgreSQL takes at most ±15:59), and a moment that leaves the
    calendar in UTC (9999-12-31T23:59:59-14:00) is refused here, not by a crash.
    """

    default_error_messages = {
        "invalid": "Enter a date and time, like 2026-11-27 10:00:00 (UTC) or 2026-11-27T11:00:00+01:00.",
        "out_of_range": "{value} is outside the calendar (years 1 to 9999 in UTC).",
    }

    widget = MomentInput

    def __init__(self, *, to_the_end_of_the_second=False, **kwargs):
        self.to_the_end_of_the_second = to_the_end_of_the_second
        kwargs.setdefault("help_text", "In UTC, as the pages show times: 2026-11-27 14:05:09.")
        super().__init__(**kwargs)

    def to_python(self, value):
        moment = super().to_python(value)
        if moment is None:
            return None
        if self.to_the_end_of_the_second and moment.microsecond == 0 and "." not in str(value):
            moment += datetime.timedelta(microseconds=999_999)
        try:
            return moment.astimezone(datetime.UTC)
        except OverflowError:
            raise forms.ValidationError(
                self.error_messages["out_of_range"].format(value=str(value).strip()[:40]), code="out_of_range"
            ) from None


class AsOfForm(forms.Form):
    """The past-view picker: a moment, or a version."""

    as_of = MomentField(required=False, label="As of", to_the_end_of_the_second=True)
    version = forms.IntegerField(required=False, min_value=1, max_value=2**31 - 1)


class AuditFilterForm(forms.Form):
    event_type = forms.ChoiceField(required=False, choices=[])
    actor = forms.CharField(required=False, max_length=150, widget=forms.TextInput(attrs={"list": "actors"}),
                            help_text="Any member of staff: type or pick a name.")  # fmt: skip
    account = forms.UUIDField(required=False)
    correlation_id = forms.CharField(required=False, max_length=100)
    since = MomentField(required=False, label="From (UTC)")
    until = MomentField(required=False, label="Until (UTC)", to_the_end_of_the_second=True)

    def clean(self):
        super().clean()
        since, until = self.cleaned_data.get("since"), self.cleaned_data.get("until")
        if since and until and since > until:
            self.add_error("until", "This is before “From”: the range is backwards. Swap the two times.")
        return self.cleaned_data

    def __init__(self, *args, event_types=(), **kwargs):
        super().__init__(*args, **kwargs)
        event_type = cast(forms.ChoiceField, self.fields["event_type"])
        event_type.choices = [("", "Any type")] + [(t, t) for t in event_types]


LAST_MONTH = datetime.date(9999, 12, 1)


class MonthForm(forms.Form):
    """The statement's month, as <input type=month> sends it: YYYY-MM."""

    month = forms.CharField(required=False, widget=forms.TextInput(attrs={"type": "month"}))

    def clean_month(self):
        text = self.cleaned_data["month"].strip()
        if not text:
            return None
        try:
            month = datetime.date.fromisoformat(f"{text}-01")
        except ValueError:
            raise forms.ValidationError("Choose a month, like 2026-11.") from None
        if month >= LAST_MONTH:  # a statement needs the first day of the month after
            raise forms.ValidationError("Choose a month up to 9999-11.")
        return month


class StaffLoginForm(AuthenticationForm):
    """Django's login form, refusing over-long usernames before anything tries them.

    AuthenticationForm sets the username's max_length after the field is built,
    so no validator enforces it: a 300-character username reached the lockout
    log, whose column holds 255, and failed with a 500.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        username = cast(forms.CharField, self.fields["username"])
        username.validators.append(MaxLengthValidator(username.max_length))


class AccountSearchForm(forms.Form):
    q = forms.CharField(required=False, max_length=200, strip=True)
    status = forms.ChoiceField(required=False, choices=[("", "Any status")] + [(s, s.title()) for s in STATUSES])
    currency = forms.ChoiceField(required=False, choices=[("", "Any currency")] + [(c, c) for c in sorted(CURRENCIES)])
    after = forms.CharField(required=False, max_length=100)

    def clean_after(self) -> selectors.AccountCursor | None:
        return _cursor(self.cleaned_data.get("after"), selectors.AccountCursor.parse)


Cursor = TypeVar("Cursor")


def _cursor(text: str | None, parse: Callable[[str], Cursor]) -> Cursor | None:
    """A list's page link, as `parse` reads it; a clear message for one the list did not make."""
    if not text:
        return None
    try:
        return parse(text)
    except ValueError:
        raise forms.ValidationError(
            "This page link is not one the list made; start again from the first page."
        ) from None
