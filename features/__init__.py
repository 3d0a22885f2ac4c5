"""Product teams' features. Each team is a package here with ``TEAM`` (its name) and
``build(team: TeamStack) -> None``; ``app.py`` gives each team its own stack and calls ``build``.

Add a team: create ``features/<team>/__init__.py`` (see ``docs/product-teams.md``) and list it below.
"""

TEAM_MODULES: tuple[str, ...] = (
    "features.support",
    "features.knowledge",
)
