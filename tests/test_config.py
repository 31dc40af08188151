"""Configuration: config.toml layering, profiles, providers and the model settings a goal is stored with.

Every test writes real files under tmp_path; GOALKEEPER_HOME points at a fresh directory (conftest.py).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from goalkeeper.config.load import Config, goalkeeper_home, load_config
from goalkeeper.config.resolve import resolve_model_settings, settings_from_config
from goalkeeper.config.trust import trust
from goalkeeper.errors import ConfigError
from goalkeeper.models.pricing import ZERO_PRICE
from goalkeeper.spec.settings import GoalSettings, ModelSettings, Price
from helpers import git


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No provider leaks in from the developer's shell."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "ANTHROPIC_API_KEY", "GOALKEEPER_MODEL", "MY_PROXY_KEY"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    path.mkdir()
    return path


def user_file(home: Path, text: str) -> Path:
    path = home / "config.toml"
    path.write_text(text)
    return path


def project_file(workspace: Path, text: str, trusted: bool = True) -> Path:
    """The project's config, committed (only the committed version is read) in a repository the person trusts
    (test_containment_config.py covers untrusted ones)."""
    path = workspace / ".goalkeeper" / "config.toml"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    if not (workspace / ".git").exists():
        git(workspace, "init", "-q", "-b", "main")
    git(workspace, "add", "-A")
    git(workspace, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "config", "--allow-empty")
    if trusted:
        trust(goalkeeper_home(), workspace)
    return path


# ---------------------------------------------------------------- layering


def test_a_project_s_store_url_and_temporal_table_are_ignored_with_a_warning(goalkeeper_home: Path,
                                                                            workspace: Path) -> None:
    """Where the store and the fleet are is the user's to say: a committed project file cannot move them, and
    says so rather than being quietly unused."""
    project_file(workspace, 'store_url = "postgresql://team@db/gk"\n[temporal]\ntls = true\n')
    config = load_config(workspace)
    [warning] = [w for w in config.warnings if "store_url" in w]
    assert "`store_url`, `temporal`" in warning and str(goalkeeper_home / "config.toml") in warning


def test_user_file_alone_configures_the_model(goalkeeper_home: Path, workspace: Path) -> None:
    user_file(goalkeeper_home, 'model_provider = "ollama"\nmodel = "qwen2.5-coder:7b"\n'
                               'model_reasoning_effort = "low"\n[run]\nshell_timeout_s = 30\n')
    config = load_config(workspace)
    settings = settings_from_config(config)
    assert (settings.provider, settings.wire_api, settings.model) == ("ollama", "chat", "qwen2.5-coder:7b")
    assert settings.base_url == "http://127.0.0.1:11434/v1" and settings.api_key_env is None
    assert settings.reasoning_effort == "low"
    assert config.run.shell_timeout_s == 30 and config.run.tool_output_token_limit == 4_000
    assert config.files == (goalkeeper_home / "config.toml",)


def test_project_file_overrides_the_user_file_key_by_key(goalkeeper_home: Path, workspace: Path) -> None:
    user_file(goalkeeper_home, 'model_provider = "ollama"\nmodel = "llama3"\n'
                               '[model_providers.ollama]\nhttp_headers = { "X-User" = "u" }\n')
    project_file(workspace, 'model = "qwen3"\n[model_providers.ollama]\nhttp_headers = { "X-Project" = "p" }\n')
    settings = settings_from_config(load_config(workspace))
    assert (settings.provider, settings.model) == ("ollama", "qwen3")
    assert settings.http_headers == {"X-User": "u", "X-Project": "p"}


def test_flags_override_both_files(goalkeeper_home: Path, workspace: Path) -> None:
    user_file(goalkeeper_home, 'model_provider = "ollama"\nmodel = "llama3"\nmodel_reasoning_effort = "low"\n')
    project_file(workspace, 'model = "qwen3"\n')
    settings = settings_from_config(load_config(workspace), model="mistral", reasoning_effort="high",
                                    base_url="http://10.0.0.5:11434/v1", model_provider="ollama", stream=True)
    assert (settings.model, settings.reasoning_effort, settings.stream) == ("mistral", "high", True)
    assert (settings.provider, settings.base_url) == ("ollama", "http://10.0.0.5:11434/v1")


def test_without_a_workspace_only_the_user_file_is_read(goalkeeper_home: Path) -> None:
    user_file(goalkeeper_home, 'model = "llama3"\n')
    assert load_config(None).model == "llama3"


def test_no_files_means_built_in_providers_and_prices(workspace: Path) -> None:
    config = load_config(workspace)
    assert config.files == () and config.model is None and config.profile is None
    assert set(config.providers) == {"openai", "anthropic", "ollama", "local"}
    assert config.prices["gpt-5-mini"] == Config().prices["gpt-5-mini"]


# ---------------------------------------------------------------- profiles


PROFILES = """\
model_provider = "ollama"
model = "llama3"

[profiles.deep]
model_provider = "anthropic"
model = "claude-opus-4-1"
model_reasoning_effort = "high"
run = { wrap_up_cap_tokens = 8000 }

[profiles.cheap]
model = "qwen3:0.6b"
"""


def test_a_profile_chosen_by_flag_overlays_the_files(goalkeeper_home: Path, workspace: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    user_file(goalkeeper_home, PROFILES)
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    config = load_config(workspace, profile="deep")
    settings = settings_from_config(config)
    assert config.profile == "deep" and config.run.wrap_up_cap_tokens == 8000
    assert (settings.provider, settings.wire_api, settings.model) == ("anthropic", "anthropic", "claude-opus-4-1")
    assert settings.api_key_env == "ANTHROPIC_API_KEY" and settings.reasoning_effort == "high"


def test_a_profile_chosen_in_a_file_applies_unless_a_flag_picks_another(goalkeeper_home: Path,
                                                                        workspace: Path) -> None:
    user_file(goalkeeper_home, PROFILES)
    project_file(workspace, 'profile = "cheap"\n')
    assert settings_from_config(load_config(workspace)).model == "qwen3:0.6b"
    assert load_config(workspace, profile="deep").model == "claude-opus-4-1"


def test_an_unknown_profile_lists_the_profiles_defined(goalkeeper_home: Path, workspace: Path) -> None:
    user_file(goalkeeper_home, PROFILES)
    with pytest.raises(ConfigError) as caught:
        load_config(workspace, profile="dep")
    assert "unknown profile `dep`" in caught.value.message and "did you mean `deep`" in caught.value.message
    assert caught.value.hint is not None and "cheap, deep" in caught.value.hint


def test_an_unknown_profile_with_none_defined_says_how_to_add_one(workspace: Path) -> None:
    project_file(workspace, 'profile = "fast"\n')
    with pytest.raises(ConfigError, match="no profiles are defined") as caught:
        load_config(workspace)
    assert caught.value.hint is not None and "[profiles.fast]" in caught.value.hint


# ---------------------------------------------------------------- providers


def test_openai_is_built_in_with_the_responses_wire_and_a_default_model(monkeypatch: pytest.MonkeyPatch,
                                                                        workspace: Path) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    settings = settings_from_config(load_config(workspace), model_provider="openai")
    assert (settings.wire_api, settings.model, settings.base_url) == ("responses", "gpt-5-mini",
                                                                      "https://api.openai.com/v1")
    assert settings.api_key_env == "OPENAI_API_KEY" and settings.price == Price(input=0.25, cached_input=0.025,
                                                                                 output=2.0)


def test_anthropic_is_built_in_with_its_own_wire_and_default_model(monkeypatch: pytest.MonkeyPatch,
                                                                   workspace: Path) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-test")
    settings = settings_from_config(load_config(workspace), model_provider="anthropic")
    assert (settings.wire_api, settings.model, settings.base_url) == ("anthropic", "claude-sonnet-4-5",
                                                                      "https://api.anthropic.com")


def test_the_local_provider_needs_no_key_no_url_and_costs_nothing(workspace: Path) -> None:
    settings = settings_from_config(load_config(workspace), model_provider="local", usd_budget=5.0)
    assert (settings.provider, settings.wire_api, settings.model) == ("local", "chat", "smollm2-135m")
    assert settings.base_url is None and settings.api_key_env is None and settings.price == ZERO_PRICE


def test_ollama_needs_a_model_name(workspace: Path) -> None:
    with pytest.raises(ConfigError, match="no model name for model provider ollama") as caught:
        settings_from_config(load_config(workspace), model_provider="ollama")
    assert caught.value.hint is not None and "--model" in caught.value.hint


def test_a_user_defined_provider_carries_headers_params_retries_and_idle_timeout(
        goalkeeper_home: Path, workspace: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    user_file(goalkeeper_home, """\
model_provider = "azure"
model = "gpt-4.1"

[model_providers.azure]
name = "Azure OpenAI"
base_url = "https://example.openai.azure.com/openai"
wire_api = "responses"
env_key = "MY_PROXY_KEY"
http_headers = { "X-Team" = "core" }
query_params = { "api-version" = "2025-04-01-preview" }
request_max_retries = 2
stream_idle_timeout_ms = 45000
""")
    monkeypatch.setenv("MY_PROXY_KEY", "secret")
    config = load_config(workspace)
    settings = settings_from_config(config)
    assert config.providers["azure"].name == "Azure OpenAI"
    assert (settings.provider, settings.wire_api, settings.api_key_env) == ("azure", "responses", "MY_PROXY_KEY")
    assert settings.http_headers == {"X-Team": "core"}
    assert settings.query_params == {"api-version": "2025-04-01-preview"}
    assert (settings.max_retries, settings.stream_idle_timeout_s) == (2, 45.0)
    assert "secret" not in settings.model_dump_json()


def test_a_built_in_provider_can_be_pointed_elsewhere(goalkeeper_home: Path, workspace: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    user_file(goalkeeper_home, '[model_providers.openai]\nbase_url = "https://proxy.example/v1"\n')
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    settings = settings_from_config(load_config(workspace), model_provider="openai")
    assert (settings.base_url, settings.wire_api) == ("https://proxy.example/v1", "responses")


def test_a_user_defined_provider_without_a_base_url_is_refused(goalkeeper_home: Path, workspace: Path) -> None:
    path = user_file(goalkeeper_home, '[model_providers.mine]\nwire_api = "chat"\n')
    with pytest.raises(ConfigError, match=re.escape("model_providers.mine: has no base_url")) as caught:
        load_config(workspace)
    assert str(path) in caught.value.message


def test_an_unknown_provider_suggests_the_closest_name(workspace: Path) -> None:
    with pytest.raises(ConfigError, match="did you mean `anthropic`") as caught:
        settings_from_config(load_config(workspace), model_provider="antropic")
    assert caught.value.hint is not None and "anthropic, local, ollama, openai" in caught.value.hint


def test_a_missing_api_key_names_the_variable_to_set(workspace: Path) -> None:
    with pytest.raises(ConfigError, match="ANTHROPIC_API_KEY is not set") as caught:
        settings_from_config(load_config(workspace), model_provider="anthropic")
    assert caught.value.hint is not None and caught.value.hint.startswith("set ANTHROPIC_API_KEY")


def test_a_flag_switching_provider_drops_the_config_model(goalkeeper_home: Path, workspace: Path) -> None:
    user_file(goalkeeper_home, 'model_provider = "ollama"\nmodel = "llama3"\n')
    assert settings_from_config(load_config(workspace), model_provider="local").model == "smollm2-135m"


# ---------------------------------------------------------------- ad hoc, environment, scripted


def test_a_base_url_without_a_provider_is_an_ad_hoc_chat_server(workspace: Path) -> None:
    settings = settings_from_config(load_config(workspace), model="llama3", base_url="http://127.0.0.1:8080/v1")
    assert (settings.provider, settings.wire_api, settings.base_url) == ("custom", "chat", "http://127.0.0.1:8080/v1")
    assert settings.api_key_env == "OPENAI_API_KEY" and settings.price is None


def test_a_base_url_flag_overrides_the_configured_provider(goalkeeper_home: Path, workspace: Path) -> None:
    user_file(goalkeeper_home, 'model_provider = "ollama"\nmodel = "llama3"\n')
    with pytest.raises(ConfigError, match=re.escape("no model name for http://127.0.0.1:8080/v1")):
        settings_from_config(load_config(workspace), base_url="http://127.0.0.1:8080/v1")


def test_the_environment_configures_an_ad_hoc_server(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_BASE_URL", "http://127.0.0.1:11434/v1")
    monkeypatch.setenv("GOALKEEPER_MODEL", "qwen2.5-coder:7b")
    settings = resolve_model_settings(None, None, None)
    assert (settings.provider, settings.model, settings.base_url) == ("custom", "qwen2.5-coder:7b",
                                                                      "http://127.0.0.1:11434/v1")


def test_an_openai_key_in_the_environment_means_openai(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    settings = resolve_model_settings(None, None, None, stream=True)
    assert (settings.provider, settings.model, settings.stream) == ("openai", "gpt-5-mini", True)


def test_nothing_configured_says_how_to_configure_a_provider(workspace: Path) -> None:
    resolvers: tuple[Callable[[], object], ...] = (lambda: resolve_model_settings(None, None, None),
                                                   lambda: settings_from_config(load_config(workspace)))
    for resolve in resolvers:
        with pytest.raises(ConfigError, match="no model provider is configured") as caught:
            resolve()
        assert caught.value.hint is not None and "OPENAI_API_KEY" in caught.value.hint
        assert "--model-provider local" in caught.value.hint


def test_a_scripted_model_replays_a_script_for_free(tmp_path: Path, goalkeeper_home: Path, workspace: Path) -> None:
    script = tmp_path / "script.json"
    script.write_text("[]")
    user_file(goalkeeper_home, 'model_provider = "anthropic"\n')
    settings = settings_from_config(load_config(workspace), model=f"scripted:{script}", usd_budget=1.0)
    assert (settings.provider, settings.wire_api, settings.script) == ("scripted", "scripted", str(script))
    assert settings.price == ZERO_PRICE
    assert resolve_model_settings(f"scripted:{script}", None, None).script == str(script)


def test_a_missing_script_is_refused() -> None:
    with pytest.raises(ConfigError, match="script file not found"):
        resolve_model_settings("scripted:/nonexistent/script.json", None, None)


# ---------------------------------------------------------------- mistakes in files


def test_an_unknown_key_names_the_file_and_suggests_the_right_one(goalkeeper_home: Path, workspace: Path) -> None:
    path = user_file(goalkeeper_home, 'modle = "gpt-5"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(workspace)
    assert f"{path}: modle: unknown key (did you mean `model`?)" in caught.value.message


def test_an_unknown_key_in_a_provider_table_suggests_the_right_one(workspace: Path) -> None:
    path = project_file(workspace, '[model_providers.mine]\nbase_ulr = "http://x/v1"\n')
    with pytest.raises(ConfigError) as caught:
        load_config(workspace)
    assert f"{path}: model_providers.mine.base_ulr: unknown key (did you mean `base_url`?)" in caught.value.message


def test_a_bad_value_says_what_to_write(goalkeeper_home: Path, workspace: Path) -> None:
    user_file(goalkeeper_home, '[model_providers.mine]\nbase_url = "http://x/v1"\nwire_api = "grpc"\n'
                               '[model_pricing."my-model"]\ninput = 1.0\noutput = -2\n')
    with pytest.raises(ConfigError) as caught:
        load_config(workspace)
    message = caught.value.message
    assert "model_providers.mine.wire_api: must be 'chat', 'responses' or 'anthropic'" in message
    assert 'write wire_api = "chat"' in message
    assert 'model_pricing."my-model".cached_input: is required; write cached_input = 0.125' in message
    assert 'model_pricing."my-model".output: must be at least 0' in message


def test_a_toml_syntax_error_names_the_file_and_line(goalkeeper_home: Path, workspace: Path) -> None:
    path = user_file(goalkeeper_home, 'model = "a"\nmodel_provider = ollama\n')
    with pytest.raises(ConfigError, match=f"{path}:2:") as caught:
        load_config(workspace)
    assert caught.value.hint is not None and "model_provider = ollama" in caught.value.hint


def test_a_bad_reasoning_effort_flag_lists_the_choices(goalkeeper_home: Path, workspace: Path) -> None:
    user_file(goalkeeper_home, 'model_provider = "local"\n')
    with pytest.raises(ConfigError, match="did you mean `high`"):
        settings_from_config(load_config(workspace), reasoning_effort="hihg")


# ---------------------------------------------------------------- stored settings


def test_settings_stored_before_wire_api_existed_still_load() -> None:
    chat = ModelSettings.model_validate({"provider": "chat", "model": "m", "base_url": "http://h/v1",
                                         "api_key_env": "OPENAI_API_KEY"})
    scripted = GoalSettings.model_validate({"model": {"provider": "scripted", "model": "scripted",
                                                      "script": "s.json"}})
    assert (chat.provider, chat.wire_api) == ("custom", "chat")
    assert scripted.model is not None and scripted.model.wire_api == "scripted"


def test_settings_round_trip_through_json(workspace: Path) -> None:
    settings = settings_from_config(load_config(workspace), model_provider="local")
    assert ModelSettings.model_validate_json(settings.model_dump_json()) == settings


# ---------------------------------------------------------------- context window and tool output


def test_the_context_window_comes_from_the_table_unless_config_names_one(goalkeeper_home: Path,
                                                                       workspace: Path) -> None:
    user_file(goalkeeper_home, 'model_provider = "ollama"\nmodel = "qwen3"\n')
    assert settings_from_config(load_config(workspace)).context_window is None  # unknown model
    assert settings_from_config(load_config(workspace), model_provider="local").context_window == 4_096
    project_file(workspace, "model_context_window = 32768\nmodel_auto_compact_token_limit = 20000\n")
    settings = settings_from_config(load_config(workspace))
    assert (settings.context_window, settings.auto_compact_token_limit) == (32_768, 20_000)


def test_a_profile_can_set_the_window_the_compaction_limit_and_the_tool_output_limit(goalkeeper_home: Path,
                                                                                   workspace: Path) -> None:
    user_file(goalkeeper_home, 'model_provider = "local"\nprofile = "roomy"\n[profiles.roomy]\n'
                               "model_context_window = 16384\nmodel_auto_compact_token_limit = 12000\n"
                               "tool_output_token_limit = 1500\n")
    config = load_config(workspace)
    settings = settings_from_config(config)
    assert (settings.context_window, settings.auto_compact_token_limit) == (16_384, 12_000)
    assert config.run.tool_output_token_limit == 1_500


def test_a_compaction_limit_above_the_window_is_refused_with_what_to_set(goalkeeper_home: Path,
                                                                         workspace: Path) -> None:
    user_file(goalkeeper_home, 'model_provider = "local"\nmodel_auto_compact_token_limit = 5000\n')
    with pytest.raises(ConfigError) as caught:
        settings_from_config(load_config(workspace))
    assert "more than the context window of smollm2-135m (4096 tokens)" in caught.value.message
    assert caught.value.hint is not None and "below 4096" in caught.value.hint
    assert "model_context_window" in caught.value.hint


def test_the_old_char_limit_key_says_to_use_the_token_limit(goalkeeper_home: Path, workspace: Path) -> None:
    path = user_file(goalkeeper_home, "[run]\ntool_output_char_limit = 12000\n")
    with pytest.raises(ConfigError) as caught:
        load_config(workspace)
    assert f"{path}: run.tool_output_char_limit: this key was removed" in caught.value.message
    assert "tool_output_token_limit = 4000 at the top level" in caught.value.message


def test_a_goal_stored_with_a_char_limit_still_loads_with_a_token_limit() -> None:
    stored = ('{"model": null, "allow_dirty": false, "run": {"tool_output_char_limit": 12000, '
              '"shell_timeout_s": 120.0, "wrap_up_cap_tokens": 32000, "heartbeat_s": 1.0, "control_poll_s": 0.2}}')
    settings = GoalSettings.model_validate_json(stored)
    assert settings.run.tool_output_token_limit == 3_000
    assert "tool_output_char_limit" not in settings.model_dump_json()
