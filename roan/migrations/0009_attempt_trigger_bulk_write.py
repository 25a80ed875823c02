# Issue 27: a purge caused by a write that sends no signal (update(), bulk_create(),
# bulk_update(), a delete without signals) is recorded with the trigger "bulk".

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('roan', '0008_merge_in_the_sender_not_the_editors_transaction'),
    ]

    operations = [
        migrations.AlterField(
            model_name='purgeattempt',
            name='trigger',
            field=models.CharField(choices=[('save', 'save'), ('delete', 'delete'), ('m2m', 'many-to-many change'), ('admin', 'admin'), ('command', 'command'), ('api', 'API'), ('retry', 'retry'), ('code_rule', 'code rule'), ('bulk', 'bulk write')], max_length=12, verbose_name='trigger'),
        ),
    ]
