from django.db import migrations, models

# Django gives a text primary key a varchar_pattern_ops index for LIKE 'prefix%';
# nothing searches command-log keys by prefix, and every command would update it.
PATTERN_INDEX = "command_log_key_32312092_like"


class Migration(migrations.Migration):
    dependencies = [
        ("eventstore", "0016_quarantine_read_once"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="commandlog",
            index=models.Index(fields=["recorded_at"], name="command_log_recorded"),
        ),
        migrations.RunSQL(
            f"DROP INDEX IF EXISTS {PATTERN_INDEX}",
            reverse_sql=f"CREATE INDEX {PATTERN_INDEX} ON command_log (key varchar_pattern_ops)",
        ),
    ]
