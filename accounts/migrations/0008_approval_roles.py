"""Every role reads approval requests; supervisors approve and reject them."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

# As accounts.roles stood when four eyes came: a migration must not change with the code.
ADDED = {
    "teller": ["view_approval"],
    "auditor": ["view_approval"],
    "supervisor": ["view_approval", "approve_request"],
}


def grant(apps, schema_editor):
    # Permissions are normally created after migrate; the groups need them now.
    app_config = apps.get_app_config("accounts")
    app_config.models_module = True
    create_permissions(app_config, apps=apps, verbosity=0)
    app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ADDED.items():
        group, _ = Group.objects.get_or_create(name=name)
        group.permissions.add(*Permission.objects.filter(content_type__app_label="accounts", codename__in=codenames))


def revoke(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, codenames in ADDED.items():
        for group in Group.objects.filter(name=name):
            group.permissions.remove(
                *Permission.objects.filter(content_type__app_label="accounts", codename__in=codenames)
            )


class Migration(migrations.Migration):
    dependencies = [("accounts", "0007_approval_read_model")]

    operations = [migrations.RunPython(grant, revoke)]
