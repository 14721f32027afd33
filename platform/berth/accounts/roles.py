"""Team roles, ordered: owner > admin > member > viewer. One place decides what "at least admin" means."""

OWNER = "owner"
ADMIN = "admin"
MEMBER = "member"
VIEWER = "viewer"

ROLE_CHOICES = [(OWNER, "Owner"), (ADMIN, "Admin"), (MEMBER, "Member"), (VIEWER, "Viewer")]
ROLES = [OWNER, ADMIN, MEMBER, VIEWER]
_RANK = {VIEWER: 1, MEMBER: 2, ADMIN: 3, OWNER: 4}


def role_at_least(role: str | None, minimum: str) -> bool:
    """True when `role` (None = not in the team) is `minimum` or higher."""
    return role is not None and _RANK[role] >= _RANK[minimum]
