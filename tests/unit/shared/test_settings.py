import pytest

from shared.settings import Settings


def test_nested_env_vars_with_prefix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_KAFKA__BOOTSTRAP_SERVERS", "kafka-1:9093,kafka-2:9093")
    monkeypatch.setenv("LOOPLINE_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("LOOPLINE_KAFKA__SASL_PASSWORD", "hunter2")
    monkeypatch.setenv("LOOPLINE_RETRY__MAX_ATTEMPTS", "5")
    monkeypatch.setenv("LOOPLINE_FLOWS_FILE", "/etc/loopline/flows.yaml")
    settings = Settings()
    assert settings.kafka.bootstrap_servers == "kafka-1:9093,kafka-2:9093"
    assert settings.kafka.security_protocol == "SASL_SSL"
    assert settings.retry.max_attempts == 5
    assert str(settings.flows_file) == "/etc/loopline/flows.yaml"
    assert settings.kafka.sasl_password is not None
    assert settings.kafka.sasl_password.get_secret_value() == "hunter2"


def test_secrets_never_print(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_ARGILLA__API_KEY", "very-secret-key")
    monkeypatch.setenv("LOOPLINE_LLM__API_KEY", "sk-also-secret")
    shown = repr(Settings()) + str(Settings().model_dump())
    assert "very-secret-key" not in shown
    assert "sk-also-secret" not in shown


def test_bad_value_is_rejected(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_KAFKA__SECURITY_PROTOCOL", "TLS-PLEASE")
    with pytest.raises(ValueError, match="security_protocol"):
        Settings()
