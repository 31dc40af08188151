"""The session commands' defaults: how many requests each may make, how much history a side question sees, and
where a draft or a PRD is written.

Apart from the sessions themselves, and importing nothing, so that `gk --help` can show them without loading a
model stack.
"""

SIDE_EVENTS = 40
"""History messages of the thread a side question's fork carries after its prefix."""

SIDE_MAX_REQUESTS = 8
"""Requests a side question may make before it must answer from what it has."""

PLAN_MAX_REQUESTS = 20
"""Requests a planning turn may make before it must submit what it has."""

DRAFT_MAX_REQUESTS = 20
"""Requests the drafting session may make before it must submit what it has."""

DRAFT_OUTPUT = "goal.draft.toml"
"""Where `gk draft` writes its goal.toml, relative to the workspace."""

PRD_OUTPUT = "PRD.md"
"""Where `gk distill` writes the PRD, relative to the workspace."""
