"""Verification: what the harness runs to judge a goal, and on which tree.

`checks` runs checks and constraints and reads metrics; `pins` records the verification surface at baseline
and `observed` turns it into a Surface; `mirror` keeps the baseline objects and `envsnap` the ignored
environment out of the model's reach; `cleanroom` builds the tree a verdict is taken on, and `surface` takes
the verdict there (and, in review mode, on the tree as it stands too).
"""
