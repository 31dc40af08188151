"""goalkeeper: runs a coding agent toward a goal until the evidence says the goal is done.

The seams are named here: a `Model` proposes (models/base.py), a `Tool` acts (tools/base.py),
`decide` chooses what happens next (core/decide.py), and the store remembers (store/).
The harness verifies; the model only proposes.
"""

__version__ = "0.1.0"
