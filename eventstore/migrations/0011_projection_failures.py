from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("eventstore", "0010_guards_fixed_search_path"),
    ]

    operations = [
        migrations.AddField(
            model_name="projectioncheckpoint",
            name="failed_event_id",
            field=models.BigIntegerField(null=True),
        ),
        migrations.AddField(
            model_name="projectioncheckpoint",
            name="failure",
            field=models.TextField(null=True),
        ),
        migrations.AddField(
            model_name="projectioncheckpoint",
            name="failed_at",
            field=models.DateTimeField(null=True),
        ),
    ]
