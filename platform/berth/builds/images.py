"""Which images a team's build or image deploy may use: every team's images sit on one engine, one `FROM` away.

The rule, enforced by `image_reference_check` alone: a team may use the stack images, images of its own apps and
images from a registry; never an image Berth made for another team.
- Every image Berth builds is labelled TEAM_LABEL=<team id> and APP_LABEL=<app> (`image_labels`).
- A reference naming an app's repository (`berth/<app>`, `<BERTH_REGISTRY>/<app>` or a loopback spelling of the
  registry's port) must name an app of the team; `berth/…` is never pulled (Docker Hub's `berth/` is not ours).
- A reference that reaches an image on this machine must not reach one labelled for another team, nor one tagged
  `berth/<app>` of another team (images built before the label).
- A reference by id (`sha256:<id>`, a hex prefix, which the engine matches against image ids) or one the engine
  resolves to an image other than by its name must reach an image labelled for the team or known by a name the
  team may use. An id that matches nothing is refused in the same words: a refusal tells nothing of other teams.
Images nobody in Berth made (an admin's `docker load`, anything pulled from a registry) stay usable by all.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass

from django.conf import settings

from berth.apps.models import App
from berth.builds.stack import STACK_REPOSITORY, VARIANTS, stack_image_ref
from berth.runtime.images import LOCAL_REPOSITORY
from berth.runtime.pull import image_inspect

TEAM_LABEL = "org.berth.image.team"
APP_LABEL = "org.berth.image.app"
# the same grammar as an image deploy's reference (lower case; `FROM BERTH/X` is refused, as the engine does)
IMAGE_REFERENCE = re.compile(
    r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]{1,5})?/)?[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
    r"(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?"
)
# the engine looks these up among image ids (any unique prefix) when no image has them as a name
_ID_FORM = re.compile(r"(?:sha256:)?[0-9a-f]{1,64}")
_LOOPBACK = re.compile(r"127(?:\.[0-9]{1,3}){3}|localhost|0\.0\.0\.0")
_DOCKER_HUB = ("docker.io", "index.docker.io")
# ARGs the engine may set itself (BuildKit's automatic platform ARGs, the proxy ARGs): their defaults in a
# Dockerfile say nothing of the value a FROM gets, so a FROM may not use them
_PROXY_ARGS = ("HTTP_PROXY", "HTTPS_PROXY", "FTP_PROXY", "NO_PROXY", "ALL_PROXY")
_ENGINE_ARGS = {
    f"{when}{part}" for when in ("TARGET", "BUILD") for part in ("PLATFORM", "OS", "ARCH", "VARIANT")
}
_ENGINE_ARGS |= set(_PROXY_ARGS) | {name.lower() for name in _PROXY_ARGS}
_ESCAPE_DIRECTIVE = re.compile(r"#\s*escape\s*=\s*`", re.IGNORECASE)
_VARIABLE = re.compile(r"\$(?:\{([^}]*)\}|([A-Za-z_][A-Za-z0-9_]*))")
_VARIABLE_FORM = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-+])(.*))?", re.DOTALL)
_MOUNT_FROM = re.compile(r"(?:^|,)from=([^,]*)", re.IGNORECASE)


class ImageRefused(ValueError):
    """A reference the team may not use. The message names the reference as written, nothing of the image."""


def refused(what: str) -> ImageRefused:
    return ImageRefused(f"{what}: not an image of this team's apps")


def image_labels(*, app: App) -> dict[str, str]:
    """The labels every image Berth builds for `app` carries: whose it is."""
    return {TEAM_LABEL: str(app.team_id), APP_LABEL: app.name}


@dataclass(frozen=True)
class ImageReference:
    """One image a Dockerfile reaches outside its own stages. `what` is how it is written, for messages;
    `base` marks a stage's FROM (the engine runs that image's ONBUILD triggers, so Berth pulls and reads it)."""

    what: str
    ref: str
    base: bool = False
    stages: tuple[str, ...] = ()


# -- reading a Dockerfile ---------------------------------------------------------------------------------------


def dockerfile_image_references(text: str, *, stages: tuple[str, ...] = ()) -> list[ImageReference]:
    """Every image `text` reaches: FROM (with global ARGs substituted), COPY/ADD --from, RUN --mount …from=,
    and the same inside ONBUILD. Stage names and indexes are the build's own and left out; `stages` are the
    names already defined (an ONBUILD trigger runs inside another build).

    A Dockerfile whose leading comments set `# escape=` to a backtick is read with both escape characters and
    the union kept: engines differ on which leading comments are directives, and a line the engine reads as an
    instruction must never hide inside another for Berth. Raises ImageRefused for a reference Berth cannot
    check (a variable it cannot resolve, quotes in a --from).
    """
    escapes = ["\\"]
    for line in text.splitlines():
        if not line.strip().startswith("#"):
            break
        if _ESCAPE_DIRECTIVE.fullmatch(line.strip()):
            escapes.append("`")
    found: dict[tuple[str, str], ImageReference] = {}
    for escape in escapes:
        for reference in _references(text, escape=escape, stages=stages):
            found.setdefault((reference.what, reference.ref), reference)
    return list(found.values())


def _logical_lines(text: str, escape: str) -> list[str]:
    """The instructions of a Dockerfile: continuation lines joined, comments and blank lines left out."""
    lines, current = [], None
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (current is not None and not stripped):
            continue  # a comment, or an empty line inside a continuation (the engine skips both)
        body = raw.rstrip(" \t")
        continued = body.endswith(escape)
        if continued:
            body = body[: -len(escape)]
        current = body if current is None else current + body
        if not continued:
            if current.strip():
                lines.append(current.strip())
            current = None
    if current is not None and current.strip():
        lines.append(current.strip())
    return lines


def _references(text: str, *, escape: str, stages: tuple[str, ...]) -> list[ImageReference]:
    stage_names = [s.lower() for s in stages]
    global_args: dict[str, str | None] = {}
    seen_from = False
    references: list[ImageReference] = []
    for line in _logical_lines(text, escape):
        keyword, _, rest = line.partition(" ")
        keyword, prefix = keyword.upper(), ""
        if keyword == "ONBUILD":
            keyword, _, rest = rest.strip().partition(" ")
            keyword, prefix = keyword.upper(), "ONBUILD "
        words = rest.split()
        if keyword == "ARG" and not seen_from and not prefix:
            for word in words:
                name, has_value, value = word.partition("=")
                global_args[name] = _arg_value(value, global_args, escape) if has_value else None
        elif keyword == "FROM":
            seen_from = seen_from or not prefix
            image_words = [w for w in words if not w.startswith("--")]  # --platform=…: not an image
            if not image_words:
                continue  # the engine refuses a FROM with nothing after it
            reference = _from_reference(image_words[0], global_args, stage_names, escape, prefix)
            if reference is not None:
                references.append(reference)
            if not prefix:
                named = len(image_words) >= 3 and image_words[1].lower() == "as"
                stage_names.append(image_words[2].lower() if named else "")
        elif keyword in ("COPY", "ADD", "RUN"):
            for word in words:
                if not word.startswith("--"):
                    break  # flags come first
                flag, _, value = word[2:].partition("=")
                if flag.lower() == "from" and keyword != "RUN":
                    references += _from_flag(f"{prefix}{keyword} --from={value}", value, stage_names)
                elif flag.lower() == "mount" and keyword == "RUN":
                    for source in _MOUNT_FROM.findall(value):
                        references += _from_flag(f"{prefix}RUN --mount=…from={source}", source, stage_names)
    return references


def _from_reference(
    written: str, global_args: dict, stage_names: list[str], escape: str, prefix: str
) -> ImageReference | None:
    what = f"{prefix}FROM {written}"
    if any(char in written for char in "'\"\\`"):
        raise ImageRefused(f"{what}: quotes and escapes are not allowed in an image reference")
    try:
        image = _substitute(written, global_args)
    except _Unresolved as exc:
        raise ImageRefused(
            f"{what}: {exc} is not a global ARG with a default (the only values Berth can check)"
        ) from None
    if image != written:
        what = f"{prefix}FROM {image}"
    if image.lower() in stage_names or image == "scratch":
        return None
    return ImageReference(what=what, ref=image, base=not prefix, stages=tuple(stage_names))


def _from_flag(what: str, value: str, stage_names: list[str]) -> list[ImageReference]:
    if any(char in value for char in "$'\"\\`"):
        raise ImageRefused(f"{what}: variables, quotes and escapes are not allowed here")
    if value.isdigit() or value.lower() in stage_names:
        return []  # a stage of this build
    return [ImageReference(what=what, ref=value, stages=tuple(stage_names))]


class _Unresolved(Exception):
    """A variable whose value Berth cannot know (the exception's text is the variable, as written)."""


def _arg_value(value: str, global_args: dict, escape: str) -> str | None:
    """A global ARG's default as a FROM sees it; None when Berth cannot be sure of it."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        value = value[1:-1]
    if any(char in value for char in "'\"" + escape):
        return None
    try:
        return _substitute(value, global_args)
    except _Unresolved:
        return None


def _substitute(word: str, variables: dict) -> str:
    """$NAME, ${NAME}, ${NAME:-default}, ${NAME:+alternative}, as the engine substitutes ARGs in FROM. Every
    variable must be a global ARG with a value the Dockerfile gives and the engine does not set itself."""

    def value(match: re.Match) -> str:
        written = match.group(1) if match.group(1) is not None else match.group(2)
        form = _VARIABLE_FORM.fullmatch(written)
        if form is None:
            raise _Unresolved(match.group(0))
        name, operator, operand = form.groups()
        if name in _ENGINE_ARGS or variables.get(name) is None:
            raise _Unresolved(f"${name}")
        if operator in (":-", "-"):
            return variables[name] or _substitute(operand, variables)
        if operator in (":+", "+"):
            return _substitute(operand, variables) if variables[name] else ""
        return variables[name]

    return _VARIABLE.sub(value, word)


# -- the rule ---------------------------------------------------------------------------------------------------


def _split(ref: str) -> tuple[str, str]:
    """(registry, repository) of a reference; Docker Hub's spellings as one, its `library/` left out."""
    name = ref.split("@", 1)[0]
    if name.rfind(":") > name.rfind("/"):
        name = name[: name.rfind(":")]
    first, slash, rest = name.partition("/")
    if slash and ("." in first or ":" in first or first == "localhost"):
        registry, repository = first, rest
    else:
        registry, repository = "docker.io", name
    if registry in _DOCKER_HUB:
        return "docker.io", repository.removeprefix("library/")
    return registry, repository


def _normalised(ref: str) -> str:
    registry, repository = _split(ref)
    name = repository if registry == "docker.io" else f"{registry}/{repository}"
    if "@" in ref:
        return f"{name}@{ref.split('@', 1)[1]}"
    tag = ref.rpartition(":")[2] if ref.rfind(":") > ref.rfind("/") else "latest"
    return f"{name}:{tag}"


def _is_berth_registry(registry: str) -> bool:
    if not settings.BERTH_REGISTRY:
        return False
    if registry == settings.BERTH_REGISTRY:
        return True
    # Berth's registry listens on a port of this machine: every loopback spelling of that port reaches it
    host, _, port = registry.rpartition(":")
    return (
        bool(host)
        and _LOOPBACK.fullmatch(host) is not None
        and port == settings.BERTH_REGISTRY.rpartition(":")[2]
    )


def _kind(ref: str, apps: set[str]) -> str:
    """ "id", "stack", "own" (an app of the team), "other" (any other name in Berth's namespaces) or "registry"."""
    if _ID_FORM.fullmatch(ref):
        return "id"
    if ref in {stack_image_ref(variant) for variant in VARIANTS}:
        return "stack"
    registry, repository = _split(ref)
    if registry == "docker.io" and repository.startswith(f"{LOCAL_REPOSITORY}/"):
        name = repository.removeprefix(f"{LOCAL_REPOSITORY}/")
    elif _is_berth_registry(registry):
        name = repository
    else:
        return "registry"
    if repository == STACK_REPOSITORY:
        return "stack"
    return "own" if name in apps else "other"


def image_reference_pullable(ref: str) -> bool:
    """Whether Berth may pull `ref`: not an id, nothing under Docker Hub's `berth/` (a name Berth does not own)."""
    registry, repository = _split(ref)
    if _ID_FORM.fullmatch(ref):
        return False
    return not (registry == "docker.io" and repository.split("/")[0] == LOCAL_REPOSITORY)


def _image_allowed(image: dict, ref: str, team_id: str, apps: set[str]) -> bool:
    owner = ((image.get("Config") or {}).get("Labels") or {}).get(TEAM_LABEL)
    if owner and owner != team_id:
        return False
    names = (image.get("RepoTags") or []) + (image.get("RepoDigests") or [])
    kinds = {name: _kind(name, apps) for name in names}
    # a local berth/<app> tag of another team: an image built before the label (a registry tag is not enough:
    # an image pulled for another team's app is pushed there too, and stays anyone's to pull)
    if any(kind == "other" and _split(name)[0] == "docker.io" for name, kind in kinds.items()):
        return False
    if _ID_FORM.fullmatch(ref) or _normalised(ref) not in {_normalised(name) for name in names}:
        # reached by id: only the team's own image, or one with a name the team could have written
        return owner == team_id or any(kind in ("stack", "own", "registry") for kind in kinds.values())
    return True


def image_reference_check(
    *,
    ref: str,
    team,
    what: str = "",
    pull: Callable[[str], None] | None = None,
) -> dict | None:
    """Refuse (ImageRefused, naming `what`, by default the reference) an image the team may not use, and return
    the image it reaches on this machine (as the engine inspects it), or None when none is here and the engine
    will pull it from a registry. With `pull`, a pullable reference not here is pulled first and checked."""
    what = what or ref
    if len(ref) > 512 or not IMAGE_REFERENCE.fullmatch(ref):
        raise ImageRefused(f"{what}: not a valid image reference")
    apps = set(App.objects.filter(team_id=team.pk).values_list("name", flat=True))
    kind = _kind(ref, apps)
    if kind == "other":
        raise refused(what)
    image = image_inspect(ref)
    if image is None and pull is not None and image_reference_pullable(ref):
        pull(ref)
        image = image_inspect(ref)
    if image is None:
        if kind == "id":
            raise refused(what)  # the same words whether another team's image has that id or none does
        if not image_reference_pullable(ref):
            raise ImageRefused(
                f"{what}: no such image on this machine (images under berth/ are never pulled)"
            )
        return None
    if not _image_allowed(image, ref, str(team.pk), apps):
        raise refused(what)
    return image


def dockerfile_check(
    *,
    dockerfile: str,
    team,
    pull: Callable[[str], None] | None = None,
) -> None:
    """Refuse (ImageRefused) a Dockerfile that reaches an image the team may not use, its base images' ONBUILD
    triggers included (they run in this build). Base images not on this machine are pulled first with `pull`."""
    for reference in dockerfile_image_references(dockerfile):
        image = image_reference_check(
            ref=reference.ref,
            team=team,
            what=reference.what,
            pull=pull if reference.base else None,
        )
        if not reference.base or image is None:
            continue
        for trigger in (image.get("Config") or {}).get("OnBuild") or []:
            for inner in dockerfile_image_references(trigger, stages=reference.stages):
                image_reference_check(
                    ref=inner.ref,
                    team=team,
                    what=f"{reference.what}: its ONBUILD {inner.what}",
                )
