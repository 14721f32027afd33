import re

from django.core.exceptions import ValidationError

# The same shape as app names: it becomes part of labels and URLs, so keep it DNS-safe.
TEAM_NAME_RE = re.compile(r"^[a-z][a-z0-9-]{1,29}$")


def validate_team_name(name: str) -> None:
    if not isinstance(name, str) or not TEAM_NAME_RE.match(name) or name.endswith("-"):
        raise ValidationError(
            {
                "name": "must be 2-30 characters: lowercase letters, digits and hyphens, starting with a letter "
                "and not ending with a hyphen"
            }
        )
