# A tag whose oldest index rows roan_prune forgot (ROAN_TAG_INDEX_MAX_URLS_PER_TAG) is
# purged wider until those pages leave the caches (issue 30). An index reads a tag's newest
# (or oldest) pages without sorting all of its rows.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('roan', '0012_schedule_rule_fields'),
    ]

    operations = [
        migrations.CreateModel(
            name='OverflowedTag',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('tag', models.CharField(max_length=255, unique=True, verbose_name='tag')),
                ('until', models.DateTimeField(verbose_name='until')),
            ],
            options={
                'verbose_name': 'overflowed tag',
                'verbose_name_plural': 'overflowed tags',
            },
        ),
        migrations.AddIndex(
            model_name='taggedurl',
            index=models.Index(fields=['tag', 'expires_at'], name='roan_taggedurl_tag_expiry'),
        ),
    ]
