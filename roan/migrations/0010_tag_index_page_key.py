# The tag index keeps each URL's page (host and path, no query string) to bound the query
# string variants per page (issue 30).

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('roan', '0009_attempt_trigger_bulk_write'),
    ]

    operations = [
        migrations.AddField(
            model_name='taggedurl',
            name='page_key',
            field=models.CharField(blank=True, default='', max_length=64, verbose_name='page key'),
        ),
        migrations.AddIndex(
            model_name='taggedurl',
            index=models.Index(fields=['page_key'], name='roan_taggedurl_page'),
        ),
    ]
