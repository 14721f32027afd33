# A random part in each build's image tag (berth/<app>:build-<token>): build ids are global and guessable.

from django.db import migrations, models

import berth.builds.models


def give_each_build_its_own_token(apps, schema_editor):
    # AddField computes a callable default once for all existing rows; each build gets a token of its own
    Build = apps.get_model("builds", "Build")
    for build in Build.objects.only("pk").iterator():
        Build.objects.filter(pk=build.pk).update(tag_token=berth.builds.models.new_tag_token())


class Migration(migrations.Migration):
    dependencies = [
        ("builds", "0002_build_worker"),
    ]

    operations = [
        migrations.AddField(
            model_name="build",
            name="tag_token",
            field=models.CharField(
                default=berth.builds.models.new_tag_token,
                editable=False,
                help_text="random part of the image's tag (build-<token>), so no team can guess another's tags",
                max_length=32,
            ),
        ),
        migrations.RunPython(give_each_build_its_own_token, migrations.RunPython.noop),
    ]
