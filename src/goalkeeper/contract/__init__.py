"""The goal contract: what done means (DESIGN §1), its TOML form and its command-line form.

Pure data and parsing: it never runs a check (that is verify/checks.py) and never prints. The models live in
model.py, goal.toml in and out in toml.py, the flag grammar in flags.py, the short display in summary.py and
the static lint of a contract in lint.py; import from here.
May import: the other adapters (verify, context, tools, models, workspace, sandbox, config, templates), store,
core, events and errors.
"""

from goalkeeper.contract.flags import contract_from_flags
from goalkeeper.contract.model import (
    Boundaries,
    Budget,
    Check,
    Comparator,
    Constraints,
    Contract,
    IterationPolicy,
    Metric,
    SandboxMode,
    VerifyPolicy,
    format_duration,
    json_path_steps,
    parse_duration,
)
from goalkeeper.contract.summary import contract_summary_lines
from goalkeeper.contract.toml import dump_contract, load_contract, parse_contract

__all__ = [
    "Boundaries",
    "Budget",
    "Check",
    "Comparator",
    "Constraints",
    "Contract",
    "IterationPolicy",
    "Metric",
    "SandboxMode",
    "VerifyPolicy",
    "contract_from_flags",
    "contract_summary_lines",
    "dump_contract",
    "format_duration",
    "json_path_steps",
    "load_contract",
    "parse_contract",
    "parse_duration",
]
