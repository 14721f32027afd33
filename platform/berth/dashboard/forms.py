"""Dashboard forms refused in place: a service's refusal becomes one message per field, shown beside the field that
failed, with what was typed kept in the re-rendered form (never cut or changed).

Templates read `errors.<field>` (and `errors.form` for what belongs to no one field) of the form they render; the
refused POST answers 400 with the whole page, its form's section in view (the form's action carries its #section).
"""

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.utils.text import capfirst

from berth.accounts.errors import Conflict
from berth.apps.models import App
from berth.apps.validators import CONFIG_VALUE_MAX_BYTES, validate_config_key

FORM = "form"  # the key of a refusal that is about the whole form
APP_NAME_MAX = App._meta.get_field("name").max_length


def field_errors(
    exc: Exception,
    *,
    fields: Iterable[str],
    aliases: Mapping[str, str] | None = None,
    conflict_field: str | None = None,
) -> dict[str, str]:
    """`exc` (ValidationError, Conflict, PermissionDenied, or an error listed by the caller) as {field: message}.

    A ValidationError's keys are the service's names; `aliases` maps those that differ from the form's (the config
    service says "config" of a value). What maps to no field of the form goes under "form", prefixed with its key."""
    fields, aliases = set(fields), dict(aliases or {})
    if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        errors: dict[str, list[str]] = {}
        for key, messages in exc.message_dict.items():
            target = aliases.get(key, key)
            if target in fields:
                errors.setdefault(target, []).extend(messages)
            else:
                errors.setdefault(FORM, []).extend(
                    messages if key == "__all__" else [f"{key}: {text}" for text in messages]
                )
        return {field: " ".join(texts) for field, texts in errors.items()}
    if isinstance(exc, ValidationError):
        text = " ".join(exc.messages)
    else:
        text = str(exc) or type(exc).__name__
    if isinstance(exc, Conflict) and conflict_field in fields:
        return {conflict_field: text}
    return {FORM: capfirst(text)}


def service_refusal(
    func: Callable[..., Any],
    /,
    *,
    fields: Iterable[str],
    aliases: Mapping[str, str] | None = None,
    conflict_field: str | None = None,
    errors: tuple[type[Exception], ...] = (),
    **kwargs,
) -> tuple[Any, dict[str, str]]:
    """Call a service: (its result, {}) or, when it refuses, (None, the refusal by field). Services are all or
    nothing, so a refused call changed nothing and the form can simply be shown again."""
    try:
        return func(**kwargs), {}
    except (ValidationError, Conflict, PermissionDenied, *errors) as exc:
        return None, field_errors(exc, fields=fields, aliases=aliases, conflict_field=conflict_field)


def config_value_error(value: str) -> str | None:
    """The config form's own check of a value's size, naming the limit and what was sent (the service's message
    names the key, which the form already shows beside)."""
    size = len(value.encode())
    if size > CONFIG_VALUE_MAX_BYTES:
        return (
            f"is {size:,} bytes; the limit is {CONFIG_VALUE_MAX_BYTES:,} bytes ({CONFIG_VALUE_MAX_BYTES // 1024} KiB) "
            "per value"
        )
    return None


def config_form_errors(key: str, value: str) -> dict[str, str]:
    """The config form's checks that name the field at fault (the service checks again, all or nothing): the key's
    shape beside the key, the value's size (with the limit) beside the value."""
    errors = {}
    try:
        validate_config_key(key)
    except ValidationError as exc:
        errors["key"] = " ".join(exc.messages)
    too_big = config_value_error(value)
    if too_big:
        errors["value"] = too_big
    elif "\x00" in value:
        errors["value"] = "contains a NUL byte"
    return errors


def app_name_error(name: str) -> str | None:
    """A name over the limit is refused naming the limit and its length (never cut to fit: the app would get
    another name than the one typed); the service's validator says the rest of the rule."""
    if len(name) > APP_NAME_MAX:
        return (
            f"is {len(name)} characters; the limit is {APP_NAME_MAX} "
            "(lowercase letters, digits and hyphens, starting with a letter)"
        )
    return None


FORMATION_FIELDS = ("replicas", "memory_mb", "cpu")


def formation_input_errors(errors: dict[str, str]) -> dict[str, str]:
    """The formation service names the process in its message ("web: must be an integer from 0 to 100"): each
    error goes beside its input ("replicas-web"); one naming no process of the form stays with the form."""
    placed: dict[str, str] = {}
    for field, text in errors.items():
        process, sep, rest = text.partition(": ")
        if field in FORMATION_FIELDS and sep and process and " " not in process:
            placed[f"{field}-{process}"] = rest
        else:
            placed[FORM] = f"{placed[FORM]} {text}" if FORM in placed else text
    return placed
