"""The goal contract's forms: goal.toml in and out (toml.py), the flag grammar (flags.py), the short display
(summary.py) and the static lint of a contract (lint.py).

The contract's data models live in spec/contract.py. Nothing here runs a check (that is verify/checks.py) or
prints. Import from the module that defines a name; this package re-exports nothing.
May import: the other adapters (verify, context, tools, models, workspace, sandbox, config, templates), store,
spec, core, events and errors.
"""
