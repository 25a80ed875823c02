# Rules may name datetime fields (publish_at, expires_at) whose future values schedule
# their purges again then (issue 29); those attempts are triggered "scheduled".

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('roan', '0011_soft_purge_and_warming'),
    ]

    operations = [
        migrations.AddField(
            model_name='purgerule',
            name='schedule_fields',
            field=models.CharField(blank=True, default='', help_text='Date and time fields of the model, separated by commas, such as publish_at, expires_at. When an object is saved with one of them in the future, its URLs are purged again at that moment, with no save then.', max_length=200, verbose_name='also purge at'),
        ),
        migrations.AlterField(
            model_name='purgeattempt',
            name='trigger',
            field=models.CharField(choices=[('save', 'save'), ('delete', 'delete'), ('m2m', 'many-to-many change'), ('admin', 'admin'), ('command', 'command'), ('api', 'API'), ('retry', 'retry'), ('code_rule', 'code rule'), ('bulk', 'bulk write'), ('scheduled', 'scheduled')], max_length=12, verbose_name='trigger'),
        ),
    ]
