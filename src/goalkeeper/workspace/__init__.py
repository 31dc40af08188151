"""The goal's git side: preflight and plumbing (git), the goal branch and a checkpoint commit per turn (goal,
checkpoints: diff, roll back, recover), the working tree's content hash used as the progress signal (tree), and
what the check runs measured of each checkpoint, read from the events (measured).

May import: the other adapters (verify, context, tools, models, sandbox, contract, config, templates), store,
spec, core, events and errors.
"""
