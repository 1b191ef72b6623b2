"""Read models: tables the projections keep, for lists and searches.

Never written by views, services or admin: only accounts.projections writes
them, in the transaction of the events they reflect. They can always be rebuilt
from the events.
"""

from django.db import models

from accounts.approvals import STATES
from accounts.domain import STATUSES


class Account(models.Model):
    """One row per bank account: its state after its latest event."""

    account_id = models.UUIDField(primary_key=True)
    owner = models.CharField(max_length=200)
    currency = models.CharField(max_length=3)
    balance = models.BigIntegerField(help_text="In minor units of the currency (cents).")
    status = models.CharField(max_length=10, choices=[(s, s.title()) for s in STATUSES])
    version = models.PositiveIntegerField()
    opened_at = models.DateTimeField()
    last_activity_at = models.DateTimeField()

    class Meta:
        db_table = "account_read_model"
        ordering = ["-opened_at", "-account_id"]
        # Nobody adds, changes or deletes read-model rows by hand: only commands.
        default_permissions = ("view",)
        permissions = [
            ("open_account", "Can open accounts"),
            ("deposit", "Can deposit"),
            ("withdraw", "Can withdraw"),
            ("transfer", "Can transfer between accounts"),
            ("freeze_account", "Can freeze accounts"),
            ("unfreeze_account", "Can unfreeze accounts"),
            ("close_account", "Can close accounts"),
        ]
        # The list runs newest opened first and pages by (opened_at, account_id): each filter
        # it offers has an index that reads a page as a range, however deep.
        indexes = [
            models.Index(fields=["opened_at", "account_id"], name="account_opened"),
            models.Index(fields=["status", "opened_at", "account_id"], name="account_status_opened"),
            models.Index(fields=["currency", "opened_at", "account_id"], name="account_currency_opened"),
            models.Index(fields=["owner"], name="account_owner"),
        ]
        constraints = [
            models.CheckConstraint(condition=models.Q(balance__gte=0), name="account_balance_not_negative"),
        ]

    def __str__(self):
        return f"{self.owner} ({self.account_id})"


class DailyStatement(models.Model):
    """One row per account and day with activity: kept by an asynchronous projection."""

    pk = models.CompositePrimaryKey("account_id", "day")
    account_id = models.UUIDField()
    day = models.DateField(help_text="The day in UTC.")
    currency = models.CharField(max_length=3)
    opening_balance = models.BigIntegerField()
    # A day's turnover is not bounded by any balance (deposit and withdraw the largest
    # amount again and again), so it is summed in numeric, where bigint would overflow
    # and halt the projection. Each amount is below 2**63 and an account has fewer
    # than 2**31 events, so 30 digits always hold the total.
    credits = models.DecimalField(max_digits=30, decimal_places=0, help_text="Money in that day, in minor units.")
    debits = models.DecimalField(max_digits=30, decimal_places=0, help_text="Money out that day, in minor units.")
    closing_balance = models.BigIntegerField()
    event_count = models.PositiveIntegerField()

    class Meta:
        db_table = "account_daily_statement"
        ordering = ["account_id", "day"]
        default_permissions = ("view",)

    def __str__(self):
        return f"{self.account_id} on {self.day}"


class BankTotal(models.Model):
    """Accounts and money per currency and status, for the dashboard: kept by an asynchronous projection,
    so that the dashboard reads a handful of rows however large the bank, and no command waits on them."""

    pk = models.CompositePrimaryKey("currency", "status")
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10, choices=[(s, s.title()) for s in STATUSES])
    accounts = models.BigIntegerField()
    # The sum of every balance of a currency: numeric, so that no bank is too rich for it.
    balance = models.DecimalField(max_digits=30, decimal_places=0, help_text="In minor units of the currency.")

    class Meta:
        db_table = "bank_totals"
        ordering = ["currency", "status"]
        default_permissions = ()  # read by the dashboard, which every role may see

    def __str__(self):
        return f"{self.currency} {self.status}: {self.accounts} accounts"


class TotalsAccount(models.Model):
    """What the totals projection knows of each account: enough to move it from one total to another."""

    account_id = models.UUIDField(primary_key=True)
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=10)
    balance = models.BigIntegerField()
    version = models.PositiveIntegerField()

    class Meta:
        db_table = "bank_totals_account"
        default_permissions = ()

    def __str__(self):
        return f"{self.account_id} ({self.currency}, {self.status})"


class Approval(models.Model):
    """One row per approval request (accounts.approvals): the approvals queue and the account pages read it."""

    request_id = models.UUIDField(primary_key=True)
    command = models.CharField(max_length=20)
    account_id = models.UUIDField()
    recipient_id = models.UUIDField(null=True, help_text="A transfer's receiving account.")
    amount = models.BigIntegerField(null=True, help_text="In minor units of the currency (cents).")
    currency = models.CharField(max_length=3)
    maker = models.CharField(max_length=150, help_text="Who asked for the command.")
    checker = models.CharField(max_length=150, blank=True, help_text="Who approved or rejected it.")
    state = models.CharField(max_length=10, choices=[(s, s.title()) for s in STATES])
    reason = models.CharField(max_length=500)
    outcome = models.CharField(max_length=600, blank=True, help_text="Why it was rejected, cancelled or failed.")
    requested_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True)
    version = models.PositiveIntegerField()

    class Meta:
        db_table = "approval_read_model"
        ordering = ["requested_at", "request_id"]
        # Requests change only through their commands; nobody edits one.
        default_permissions = ("view",)
        permissions = [("approve_request", "Can approve or reject approval requests")]
        indexes = [
            models.Index(fields=["state", "requested_at"], name="approval_state_requested"),
            models.Index(fields=["account_id", "requested_at"], name="approval_account_requested"),
            models.Index(fields=["maker", "requested_at"], name="approval_maker_requested"),
        ]

    def __str__(self):
        return f"{self.command} request {self.request_id} ({self.state})"
