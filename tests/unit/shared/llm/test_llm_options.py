"""The `openai` LLM's options from a flow: named parameters only, defaults from the settings."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from shared.flows import PluginRef
from shared.llm.build import build_llm
from shared.llm.client import CLIENT_OPTIONS, GENERATION_PARAMS, OpenAICompatibleLLM
from shared.plugins import PluginKind, PluginOptionsError, PluginRegistry
from shared.settings import LLMSettings


def build(options: dict[str, object], defaults: LLMSettings | None = None) -> OpenAICompatibleLLM:
    llm = PluginRegistry().build(PluginKind.llms, "openai", options, defaults=defaults)
    assert isinstance(llm, OpenAICompatibleLLM)
    return llm


@pytest.mark.parametrize("typo", ["temprature", "max_token", "top-p"])
def test_a_typo_in_llm_options_is_refused_with_the_accepted_list(typo: str) -> None:
    with pytest.raises(PluginOptionsError) as caught:
        build({typo: 0.7})
    message = str(caught.value)
    assert f"llms plugin 'openai': unknown option(s) ['{typo}']" in message
    accepted = message.split("accepted: ", 1)[1].split(", ")
    assert accepted == sorted(CLIENT_OPTIONS | GENERATION_PARAMS | {"params"})
    assert {"temperature", "max_tokens", "top_p", "base_url", "params"} <= set(accepted)


def test_named_parameters_and_params_become_generation_parameters() -> None:
    llm = build(
        {
            "temperature": 0.7,
            "max_tokens": 512,
            "top_k": 40,
            "min_p": 0.05,
            "repeat_penalty": 1.1,
            "params": {"grammar": "root ::= [a-z]+", "temperature": 1.0},
        }
    )
    assert llm.params == {
        "grammar": "root ::= [a-z]+",
        "temperature": 0.7,
        "max_tokens": 512,
        "top_k": 40,
        "min_p": 0.05,
        "repeat_penalty": 1.1,
    }


def test_built_without_defaults_it_uses_the_default_settings() -> None:
    llm = build({})
    settings = LLMSettings()
    assert (llm.base_url, llm.model, llm.timeout_s) == (
        settings.base_url,
        settings.model,
        settings.timeout_s,
    )
    assert llm._client is None, "building must not open a connection pool"


def test_defaults_fill_what_the_flow_leaves_out() -> None:
    defaults = LLMSettings(
        base_url="http://gpu:8000/v1", model="judge-7b", api_key=SecretStr("s"), timeout_s=9
    )
    llm = build_llm(PluginRef(plugin="openai", options={"seed": 3}), defaults, PluginRegistry())
    assert isinstance(llm, OpenAICompatibleLLM)
    assert (llm.base_url, llm.model, llm.timeout_s, llm.params) == (
        "http://gpu:8000/v1",
        "judge-7b",
        9,
        {"seed": 3},
    )
    assert llm._headers == {"authorization": "Bearer s"}
    default = build_llm(None, defaults, PluginRegistry())
    assert (default.model, default.params) == ("judge-7b", {})


def test_a_bad_value_names_the_plugin() -> None:
    with pytest.raises(PluginOptionsError, match="llms plugin 'openai': params must be a mapping"):
        build({"params": [1]})
    with pytest.raises(PluginOptionsError, match="max_in_flight must be at least 1"):
        build({"max_in_flight": 0})


def test_a_flow_names_the_model_and_the_settings_say_where_it_is_served() -> None:
    defaults = LLMSettings(
        base_url="http://127.0.0.1:8080/v1",
        model="big",
        endpoints={"small": "http://127.0.0.1:8081/v1"},
    )
    small = OpenAICompatibleLLM.from_options({"model": "small"}, defaults=defaults)
    big = OpenAICompatibleLLM.from_options({}, defaults=defaults)
    elsewhere = OpenAICompatibleLLM.from_options(
        {"model": "small", "base_url": "http://127.0.0.1:9999/v1"}, defaults=defaults
    )
    assert (small.base_url, small.model) == ("http://127.0.0.1:8081/v1", "small")
    assert (big.base_url, big.model) == ("http://127.0.0.1:8080/v1", "big")
    assert elsewhere.base_url == "http://127.0.0.1:9999/v1"
    # The deployment's key goes to the endpoints it names, not to a URL a flow brings.
    assert small._headers and big._headers and not elsewhere._headers
