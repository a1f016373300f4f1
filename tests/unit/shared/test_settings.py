import pytest
from pydantic import ValidationError

from shared.settings import KafkaSettings, Settings


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


def test_the_topic_prefix_names_every_topic_of_the_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPLINE_KAFKA__TOPIC_PREFIX", "team-a.")
    kafka = Settings().kafka
    assert kafka.topic_prefix == "team-a."
    assert kafka.topic("records.judged") == "team-a.records.judged"
    assert kafka.topic("records.judged.dlq") == "team-a.records.judged.dlq"
    assert kafka.logical_topic("team-a.records.judged") == "records.judged"
    assert kafka.owns("team-a.records.judged")
    assert not kafka.owns("records.judged")


def test_no_topic_prefix_leaves_the_names_as_they_are() -> None:
    kafka = Settings().kafka
    assert kafka.topic_prefix == ""
    assert kafka.topic("records.judged") == "records.judged"
    assert kafka.logical_topic("records.judged") == "records.judged"
    assert kafka.owns("anything.at.all")


@pytest.mark.parametrize("prefix", ["team-a.", "Team_B-", "x", "a.b.c_-9", ""])
def test_a_topic_prefix_of_kafka_topic_characters_is_taken(prefix: str) -> None:
    assert KafkaSettings(topic_prefix=prefix).topic("records.judged") == f"{prefix}records.judged"


@pytest.mark.parametrize(
    ("prefix", "named"),
    [("team a.", "' '"), ("team/a.", "'/'"), ("équipe.", "'é'"), ("a:b", "':'"), ("t*", "'*'")],
)
def test_a_topic_prefix_kafka_would_refuse_is_refused_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, prefix: str, named: str
) -> None:
    monkeypatch.setenv("LOOPLINE_KAFKA__TOPIC_PREFIX", prefix)
    with pytest.raises(ValidationError) as refused:
        Settings()
    message = str(refused.value)
    assert "kafka.topic_prefix" in message
    assert f"LOOPLINE_KAFKA__TOPIC_PREFIX {prefix!r} has {named}" in message
    assert "letters, digits, '.', '_' and '-'" in message


def test_a_topic_prefix_leaves_room_for_the_topic_names() -> None:
    KafkaSettings(topic_prefix="a" * 200)
    with pytest.raises(ValidationError, match="at most 200"):
        KafkaSettings(topic_prefix="a" * 201)
