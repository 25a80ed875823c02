# Coalescing of pending attempts without partial indexes, so that it works on MySQL and
# MariaDB too: every row carries a hash of (backend, node, host, kind, target), and a
# stored generated column holds it only while the row is pending and unclaimed, under an
# ordinary unique constraint. The partial index of rows to send goes: due() reads the
# (status, created_at) index.
#
# Rows pending when this runs have no hash; they are sent as they are, and new requests
# for their targets start new rows.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('roan', '0004_tag_index_tagged_urls'),
    ]

    operations = [
        migrations.RemoveConstraint(
            model_name='purgeattempt',
            name='roan_attempt_pending_unique',
        ),
        migrations.RemoveIndex(
            model_name='purgeattempt',
            name='roan_attempt_due',
        ),
        migrations.AddField(
            model_name='purgeattempt',
            name='dedup_key',
            field=models.CharField(blank=True, db_default='', default='', editable=False, max_length=32, verbose_name='dedup key'),
        ),
        migrations.AddField(
            model_name='purgeattempt',
            name='pending_key',
            field=models.GeneratedField(db_persist=True, expression=models.Case(models.When(models.Q(('claimed_until__isnull', True), ('status', 'pending'), models.Q(('dedup_key', ''), _negated=True)), then=models.F('dedup_key')), default=None), output_field=models.CharField(max_length=32, null=True), verbose_name='pending key'),
        ),
        migrations.AddConstraint(
            model_name='purgeattempt',
            constraint=models.UniqueConstraint(fields=('pending_key',), name='roan_attempt_pending_key'),
        ),
    ]
