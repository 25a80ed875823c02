# An attempt records whether its purge was soft (marked stale, the backend's SOFT option)
# and whether roan warmed the page afterwards (the backend's WARM option); issue 29.

from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('roan', '0010_tag_index_page_key'),
    ]

    operations = [
        migrations.AddField(
            model_name='purgeattempt',
            name='soft',
            field=models.BooleanField(db_default=False, default=False, help_text='Marked stale rather than removed (the backend\'s SOFT option): the cache may serve the old copy once while it fetches the new one.', verbose_name='soft'),
        ),
        migrations.AddField(
            model_name='purgeattempt',
            name='warming',
            field=models.CharField(blank=True, choices=[('', 'not warmed'), ('pending', 'warming'), ('warmed', 'warmed'), ('failed', 'not warmed (failed)')], db_default='', default='', help_text="Whether roan fetched the page through the cache after the purge (the backend's WARM option), so that the next reader gets a hit.", max_length=8, verbose_name='warming'),
        ),
    ]
