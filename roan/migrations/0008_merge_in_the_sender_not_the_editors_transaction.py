# Wave 3 (issue 24): the editor's transaction only appends its own rows; no unique pending
# key that concurrent editors queue behind or deadlock on. The sender merges twins by key.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('roan', '0007_purgetry'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='purgeattempt',
            name='roan_attempt_pending_key',
        ),
        migrations.RemoveField(
            model_name='purgeattempt',
            name='pending_key',
        ),
        migrations.AlterField(
            model_name='purgeattempt',
            name='coalesced',
            field=models.PositiveIntegerField(default=0, help_text='Other requests for the same target that the sender merged into this one: sent once, their rows record the same outcome.', verbose_name='coalesced'),
        ),
        migrations.AddIndex(
            model_name='purgeattempt',
            index=models.Index(fields=['dedup_key', 'status'], name='roan_attempt_dedup'),
        ),
    ]
