"""A goal's value types: the contract (what done means, contract.py) and the settings stored with it
(settings.py, prices included). Pure pydantic models with their validation; no I/O, no config files.

They sit on the bottom floor so the store can parse a goal row into them once, at its boundary.
May import: pydantic, errors and the standard library only.
"""
