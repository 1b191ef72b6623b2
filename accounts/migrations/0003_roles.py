"""Create the teller, supervisor and auditor groups with their permissions."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

# A copy of accounts.roles as it stood: a migration must not change with the code.
READ = ["accounts.view_account", "eventstore.view_event", "eventstore.view_snapshot", "eventstore.view_commandlog"]
TELLER = READ + ["accounts.open_account", "accounts.deposit", "accounts.withdraw", "accounts.transfer"]
SUPERVISOR = TELLER + ["accounts.freeze_account", "accounts.unfreeze_account", "accounts.close_account"]
ROLES = {"teller": TELLER, "supervisor": SUPERVISOR, "auditor": READ}


def create_roles(apps, schema_editor):
    # Permissions are normally created after migrate; the groups need them now.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    for name, permissions in ROLES.items():
        group, _ = Group.objects.get_or_create(name=name)
        wanted = [p.split(".") for p in permissions]
        group.permissions.set(
            [Permission.objects.get(content_type__app_label=app, codename=codename) for app, codename in wanted]
        )


def remove_roles(apps, schema_editor):
    apps.get_model("auth", "Group").objects.filter(name__in=ROLES).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("accounts", "0002_permissions"),
        ("eventstore", "0004_view_only_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(create_roles, remove_roles)]
