# Keep each failed try of an attempt (roan issue 12), beside the attempt row.

import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('roan', '0006_async_invalidation_status'),
    ]

    operations = [
        migrations.CreateModel(
            name='PurgeTry',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('number', models.PositiveSmallIntegerField(help_text='1 for the first try of the attempt, 2 for the next...', verbose_name='try')),
                ('finished_at', models.DateTimeField(help_text='When the try ended: the cache answered, or could not be reached.', verbose_name='time')),
                ('status', models.CharField(choices=[('pending', 'pending'), ('ok', 'ok'), ('not_cached', 'not cached'), ('failed', 'failed'), ('gave_up', 'gave up'), ('skipped', 'skipped')], max_length=12, verbose_name='status')),
                ('http_status', models.PositiveSmallIntegerField(blank=True, null=True, verbose_name='HTTP status')),
                ('latency_ms', models.FloatField(blank=True, null=True, verbose_name='latency (ms)')),
                ('error', models.CharField(blank=True, max_length=500, verbose_name='error')),
                ('attempt', models.ForeignKey(db_index=False, on_delete=django.db.models.deletion.CASCADE, related_name='kept_tries', to='roan.purgeattempt', verbose_name='purge attempt')),
            ],
            options={
                'verbose_name': 'purge try',
                'verbose_name_plural': 'purge tries',
                'ordering': ['attempt', 'number'],
                'indexes': [models.Index(fields=['finished_at'], name='roan_try_finished')],
                'constraints': [models.UniqueConstraint(fields=('attempt', 'number'), name='roan_try_number')],
            },
        ),
    ]
