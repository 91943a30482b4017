"""Operating surface without a broker: settings (security, secrets), JSON logs, topic plan, schemas, compose."""
from __future__ import annotations

import json
import logging
import re
import ssl
from pathlib import Path

import pytest
import yaml
from pydantic import ValidationError

import topics
from app.cli import admin
from app.ops import logs
from app.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def _settings(**kw) -> Settings:
    return Settings(_env_file=None, **kw)


def test_settings__plaintext_by_default():
    kwargs = _settings(kafka_bootstrap_servers="a:9092, b:9093").kafka_client_kwargs()
    assert kwargs == {"bootstrap_servers": ["a:9092", "b:9093"], "security_protocol": "PLAINTEXT"}
    assert _settings().faust_credentials() is None


@pytest.mark.parametrize("mechanism", ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"])
def test_settings__sasl_ssl_reaches_both_faust_and_plain_clients(mechanism):
    s = _settings(kafka_security_protocol="SASL_SSL", kafka_sasl_mechanism=mechanism,
                  kafka_sasl_username="svc", kafka_sasl_password="hunter2")
    kwargs = s.kafka_client_kwargs()
    assert kwargs["security_protocol"] == "SASL_SSL" and kwargs["sasl_mechanism"] == mechanism
    assert (kwargs["sasl_plain_username"], kwargs["sasl_plain_password"]) == ("svc", "hunter2")
    assert isinstance(kwargs["ssl_context"], ssl.SSLContext)
    creds = s.faust_credentials()
    assert (creds.protocol.value, creds.mechanism.value, creds.username, creds.password) == (
        "SASL_SSL", mechanism, "svc", "hunter2")


def test_settings__tls_only_gives_an_ssl_context_and_no_sasl():
    s = _settings(kafka_security_protocol="SSL")
    assert "sasl_mechanism" not in s.kafka_client_kwargs()
    assert s.faust_credentials().protocol.value == "SSL"


def test_settings__sasl_without_credentials_is_refused_at_start():
    with pytest.raises(ValidationError, match="KAFKA_SASL_USERNAME"):
        _settings(kafka_security_protocol="SASL_PLAINTEXT")


def test_settings__secrets_never_appear_in_repr_or_dumps():
    s = _settings(webhook_secret="whsec_abc", kafka_security_protocol="SASL_PLAINTEXT",
                  kafka_sasl_username="u", kafka_sasl_password="pw_xyz")
    for text in (repr(s), str(s), s.model_dump_json()):
        assert "whsec_abc" not in text and "pw_xyz" not in text


def test_settings__webhook_is_off_without_a_secret_unless_explicitly_unsigned():
    assert not _settings().webhook_enabled
    assert _settings(webhook_secret="x").webhook_enabled
    assert _settings(webhook_allow_unsigned=True).webhook_enabled


def test_settings__topic_name_overrides_win_over_the_prefix():
    s = _settings(topic_prefix="stg-", topic_names={"voucherify-webhooks": "vfy.hooks"})
    assert s.topic_name("voucherify-webhooks") == "vfy.hooks"
    assert s.topic_name("customer-point-state") == "stg-customer-point-state"


def test_settings__read_from_the_environment(monkeypatch):
    monkeypatch.setenv("TOPIC_NAMES", '{"customer-point-state": "analytics.points"}')
    monkeypatch.setenv("WEBHOOK_SECRET", "s")
    monkeypatch.setenv("LOG_FORMAT", "json")
    s = _settings()
    assert s.topic_name("customer-point-state") == "analytics.points"
    assert s.webhook_secret.get_secret_value() == "s" and s.log_format == "json"


def test_json_logs__one_parseable_object_per_record_with_extras_and_exception():
    fmt = logs.JsonFormatter()
    try:
        raise ValueError("boom")
    except ValueError:
        import sys
        rec = logging.LogRecord("app.x", logging.WARNING, __file__, 1, "dead-lettered %s", ("p0",), sys.exc_info())
    rec.partition = 3
    line = fmt.format(rec)
    assert "\n" not in line
    out = json.loads(line)
    assert (out["level"], out["logger"], out["message"], out["partition"]) == ("warning", "app.x", "dead-lettered p0", 3)
    assert "ValueError: boom" in out["exc"]
    assert logs.logging_config("text", "info") is None
    config = logs.logging_config("json", "warning")
    assert config["formatters"]["json"]["()"] is logs.JsonFormatter and config["root"]["level"] == "WARNING"


def test_topic_plan__every_registry_topic_and_changelog_with_partitions_and_compaction():
    s = _settings(partitions=6, topic_prefix="p-", app_id="pp")
    planned = {p.name: p for p in admin.plan(s)}
    for spec in topics.ALL:
        p = planned["p-" + spec.name]
        assert p.partitions == 6 and (p.config.get("cleanup.policy") == "compact") == spec.compacted
        assert p.config["max.message.bytes"] == str(1024 * 1024 + 12)  # Kafka's broker default, as on Kafka
    for table in ("cards", "entries", "customers"):
        assert planned[f"pp-{table}-changelog"].config == {"cleanup.policy": "compact",
                                                           "max.message.bytes": str(1024 * 1024 + 12)}


def test_topic_plan__changelog_names_match_what_faust_declares():
    from app import main

    names = {p.name for p in admin.plan(main.settings)}
    for table in (main.cards_table, main.entries_table, main.customers_table):
        assert table.changelog_topic.get_topic_name() in names


def test_json_schemas__committed_files_are_current_and_describe_every_output_topic():
    assert admin.write_schemas(admin.SCHEMA_DIR, check=True) == 0, "run: python -m app admin schemas"
    outputs = {s.name for s in topics.ALL if s.value is not None and not s.internal}
    files = {p.name for p in admin.SCHEMA_DIR.glob("*.json")}
    assert files == {f"{n}.value.schema.json" for n in outputs}


def test_json_schemas__the_documented_examples_are_valid_records_with_every_required_field():
    from app.models.records import CustomerPointState, PendingPointsActivation, PendingPointsEntry

    readme = (ROOT / "docs" / "contract.md").read_text()
    for topic, model in (("customer-point-state", CustomerPointState),
                         ("pending-points-activations", PendingPointsActivation),
                         ("pending-points-entries", PendingPointsEntry)):
        schema = json.loads((admin.SCHEMA_DIR / f"{topic}.value.schema.json").read_text())
        example = json.loads(readme.split(f"**`{topic}`**", 1)[1].split("```json", 1)[1].split("```", 1)[0])
        model.model_validate(example)
        assert set(schema["required"]) <= set(example)


# --- docker-compose.yml stays valid though it cannot run here ---------------------------------------------

def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _env_names(service: dict) -> set[str]:
    env = service.get("environment") or {}
    return set(env) - {"<<"} if isinstance(env, dict) else {e.split("=", 1)[0] for e in env}


def test_compose__kafka_two_workers_and_a_public_webhook_url():
    services = _compose()["services"]
    workers = [n for n, s in services.items() if s.get("build")
               and "worker" in " ".join(s.get("command") or ["worker"])]
    assert len(workers) >= 2 and services["kafka"]["image"].startswith("apache/kafka")
    published = " ".join(p for s in services.values() for p in s.get("ports", []))
    assert "8080:8080" in published  # the webhook URL


def test_compose__every_worker_env_name_is_a_setting():
    known = {name.upper() for name in Settings.model_fields}
    for name, service in _compose()["services"].items():
        if service.get("build"):
            unknown = _env_names(service) - known
            assert not unknown, f"{name}: {unknown} are not settings (app/settings.py)"


def test_compose__referenced_files_exist():
    text = (ROOT / "docker-compose.yml").read_text()
    for service in _compose()["services"].values():
        if service.get("build"):
            assert (ROOT / service["build"] / "Dockerfile").exists()
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (ROOT / source).exists(), source
    for copied in re.findall(r"^COPY (.+) \S+$", (ROOT / "Dockerfile").read_text(), re.M):
        for path in copied.split():
            assert (ROOT / path).exists(), path
    assert "WEBHOOK_SECRET" in text
    upstreams = re.findall(r"server (\w+):(\d+)", (ROOT / "deploy" / "nginx.conf").read_text())
    services = _compose()["services"]
    assert upstreams and all(host in services for host, _ in upstreams)


def test_compat__the_pinned_library_versions_are_the_ones_the_patches_were_verified_against():
    import re

    from app import compat

    pins = dict(re.findall(r'"(faust-streaming|aiokafka)==([^"]+)"', (ROOT / "pyproject.toml").read_text()))
    assert {name: (version,) for name, version in pins.items()} == compat.VERIFIED
    assert compat.unverified() == []  # this environment runs what was verified: no start-up warning


def test_compat__a_patch_installs_once_and_keeps_the_original_reachable():
    from app import compat

    class Library:
        def call(self):
            return "original"

    def make(original):
        def call(self):
            return "patched " + original(self)
        return call

    assert compat.patch(Library, "call", make, "test") is True
    assert compat.patch(Library, "call", make, "test") is False  # a second install is a no-op
    assert Library().call() == "patched original"


def test_settings_doc__the_committed_table_is_generated_from_the_settings_fields():
    assert admin.write_settings_doc(check=True) == 0, "run: python -m app admin settings"


@pytest.mark.parametrize("gen0, expect_frozen", [(50_000, True), (0, False)])
def test_gc_tuning__young_threshold_and_frozen_start_up_heap_or_python_default(gen0, expect_frozen):
    # in a process of its own: the collector's settings are process-wide
    import subprocess
    import sys

    code = ("import gc; from app.startup.worker import _tune_gc; before = gc.get_threshold(); "
            f"_tune_gc({gen0}); print(before[0], gc.get_threshold()[0], gc.get_freeze_count())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    before, after, frozen = map(int, out.stdout.split()[-3:])
    if expect_frozen:
        assert (after, frozen > 10_000) == (gen0, True)
    else:
        assert (after, frozen) == (before, 0)
