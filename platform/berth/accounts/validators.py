import re
import unicodedata

from django.core.exceptions import ValidationError

# The same shape as app names: it becomes part of labels and URLs, so keep it DNS-safe. Every pattern here is
# used with fullmatch: `$` would also match before a trailing newline ("acme\n").
TEAM_NAME_RE = re.compile(r"[a-z][a-z0-9-]{1,29}")
TOKEN_NAME_MAX = 100


def validate_team_name(name: str) -> None:
    if not isinstance(name, str) or not TEAM_NAME_RE.fullmatch(name) or name.endswith("-"):
        raise ValidationError(
            {
                "name": "must be 2-30 characters: lowercase letters, digits and hyphens, starting with a letter "
                "and not ending with a hyphen"
            }
        )


def has_control_characters(text: str) -> bool:
    """Whether `text` holds a character that has no business in a one-line name: C0/C1 controls (\\n, \\r, \\t,
    NUL, ESC), format characters (bidi overrides, zero-width), line and paragraph separators, surrogates."""
    return any(unicodedata.category(char)[0] == "C" or char in "\u2028\u2029\x85" for char in text)


def validate_one_line_text(text, *, field: str, max_length: int) -> None:
    """A free-text name shown in lists and log lines (a token's name, an email address): one printable line of
    1..max_length characters, without surrounding whitespace (which would make two names look the same)."""
    # blank (whitespace only) is as good as empty
    if not isinstance(text, str) or not text.strip() or len(text) > max_length:
        raise ValidationError({field: f"must be 1-{max_length} characters"})
    if has_control_characters(text):
        raise ValidationError({field: "must not contain control characters or line breaks"})
    if text != text.strip():
        raise ValidationError({field: "must not start or end with whitespace"})


def validate_token_name(name) -> None:
    validate_one_line_text(name, field="name", max_length=TOKEN_NAME_MAX)
