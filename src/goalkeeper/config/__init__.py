"""Configuration: config.toml files, flags and the environment, resolved into the settings stored with a goal.

Layers, later wins: built-in providers and prices, `$GOALKEEPER_HOME/config.toml`,
`<workspace>/.goalkeeper/config.toml`, the chosen `[profiles.NAME]`, then flags. Codex's key names are
used where the meaning matches (model, model_provider, model_reasoning_effort, profile, [model_providers]).
The settings models themselves live in spec/settings.py. Import from the module that defines a name; this
package re-exports nothing.
May import: the other adapters (verify, context, tools, models, workspace, sandbox, contract, templates),
store, spec, core, events and errors.
"""
