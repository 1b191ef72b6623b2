"""The bank's roles: Django groups and the permissions each one holds.

Every view and command checks a permission, never a group name, so a bank can
reshape its roles in the admin without touching code.
"""

READ = [
    "accounts.view_account",
    "eventstore.view_event",
    "eventstore.view_snapshot",
    "eventstore.view_commandlog",
    "accounts.view_approval",
]
TELLER = READ + ["accounts.open_account", "accounts.deposit", "accounts.withdraw", "accounts.transfer"]
SUPERVISOR = TELLER + [
    "accounts.freeze_account", "accounts.unfreeze_account", "accounts.close_account", "accounts.approve_request",
]  # fmt: skip

ROLES = {"teller": TELLER, "supervisor": SUPERVISOR, "auditor": READ}


def ensure_roles() -> None:
    """Create the groups with exactly these permissions (the data migration did it once)."""
    from django.contrib.auth.models import Group, Permission

    for name, permissions in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = [permission.split(".") for permission in permissions]
        group.permissions.set(
            [Permission.objects.get(content_type__app_label=app, codename=codename) for app, codename in wanted]
        )
