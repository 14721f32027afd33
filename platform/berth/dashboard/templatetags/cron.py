"""`{% cron_jobs app %}`: the app page's scheduled jobs (berth.jobs), read here so the page's view stays as it is."""

from django import template

from berth.jobs.selectors import cron_jobs_with_last_runs

register = template.Library()


@register.inclusion_tag("dashboard/_cron.html")
def cron_jobs(app) -> dict:
    return {"app": app, "jobs": cron_jobs_with_last_runs(app)}
