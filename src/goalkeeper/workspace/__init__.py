"""The goal's git side: preflight and plumbing (git), the goal branch and a checkpoint commit per turn (goal,
checkpoints: diff, roll back, recover) and the working tree's content hash used as the progress signal (tree).

May import: the other adapters (verify, context, tools, models, sandbox, contract, config, templates), store,
spec, core, events and errors.
"""
