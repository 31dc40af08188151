"""The decision core: goal statuses and who may move them (lifecycle), the state, outcomes and actions `decide`
speaks (outcomes), the pure `decide(state, outcome)` itself, the state's dict codec (state), terminal-safe text,
and a goal's digest (digest: what its summary shows, folded from its events).

Pure and synchronous: no I/O, no clock, no randomness, so it is property-tested (tests/test_decide.py).
May import: the standard library, goalkeeper.errors and goalkeeper.events; nothing else (import contract).
"""
