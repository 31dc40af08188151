"""Verification: what the harness runs to judge a goal, and on which tree.

`checks` runs checks and constraints and reads metrics; `tests` reads a test run's per-test results (through
`reporters`); `pins` records the verification surface at baseline and `observed` (with `trace`) turns it into a
Surface; `mirror` keeps the baseline objects and `envsnap` the ignored environment out of the model's reach;
`cleanroom` builds the tree a verdict is taken on, and `surface` takes the verdict there (and, in review mode, on
the tree as it stands too); `lint` runs a goal's checks once in a scratch copy before the goal is set.
May import: the other adapters (context, tools, models, workspace, sandbox, contract, config, templates),
store, spec, core, events and errors.
"""

#: The name the failed double check goes by, in evidence, attempts and the report (here, so that the report
#: names it without loading the verifier; tests.py, which imports nothing of goalkeeper's, keeps its own copy).
TAMPERING = "verification_tampering"
