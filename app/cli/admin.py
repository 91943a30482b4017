"""Operator commands over the topic registry:

    python -m app admin create-topics [--dry-run]   # create every topic with its partitions and cleanup policy
    python -m app admin schemas [--check] [--out DIR] # JSON Schema of every output topic's value (topics/schemas)
    python -m app admin settings [--check]            # docs/settings.md from the Settings fields' descriptions

Workers also declare their topics at start; `create-topics` is for clusters where topics are provisioned ahead
(or the workers' principal may not create them). Table changelogs are included: they must be compacted.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import topics
from app.settings import Settings, get_settings

SCHEMA_DIR = Path(topics.__file__).resolve().parent / "schemas"
SETTINGS_DOC = Path(__file__).resolve().parents[2] / "docs" / "settings.md"
TABLES = ("cards", "entries", "customers")  # app.main declares them; their changelogs are named by Faust's rule below


@dataclass(frozen=True)
class Plan:
    name: str
    partitions: int
    config: dict[str, str]


def plan(settings: Settings) -> list[Plan]:
    """Every topic the service needs, as it should exist on the cluster (the registry's, then the changelogs)."""
    out = []
    for spec in topics.ALL:
        out.append(Plan(settings.topic_name(spec.name), settings.partitions, settings.topic_config(spec.compacted)))
    for table in TABLES:  # Faust: "{app_id}-{table}-changelog", compacted, as many partitions as the table
        out.append(Plan(f"{settings.app_id}-{table}-changelog", settings.partitions, settings.topic_config(True)))
    return out


async def create_topics(settings: Settings, dry_run: bool = False) -> list[str]:
    """Create the missing topics; one line per topic: `create`, `exists`, or `failed` with the broker's error
    (aiokafka returns per-topic errors in the response instead of raising)."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    wanted = plan(settings)
    lines = []
    admin = AIOKafkaAdminClient(**settings.kafka_client_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [p for p in wanted if p.name not in existing]
        for p in wanted:
            state = "create" if p in missing else "exists"
            lines.append(f"{state:7} {p.name} partitions={p.partitions} {p.config or ''}".rstrip())
        if missing and not dry_run:
            response = await admin.create_topics([
                NewTopic(p.name, p.partitions, settings.replication_factor, topic_configs=p.config)
                for p in missing
            ])
            for error in getattr(response, "topic_errors", ()):
                name, code, message = error[0], error[1], (error[2] if len(error) > 2 else "")
                if code not in (0, 36):  # 36: TOPIC_ALREADY_EXISTS (another worker was first)
                    lines.append(f"failed  {name} error_code={code} {message or ''}".rstrip())
    finally:
        await admin.close()
    return lines


def schemas() -> dict[str, dict]:
    """File name -> JSON Schema of the value of each output topic (with its key described)."""
    out = {}
    for spec in topics.ALL:
        if spec.value is None or spec.internal:
            continue
        schema = _open(spec.value.model_json_schema(mode="serialization"))
        schema = {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"{spec.name}.value.schema.json",
            "x-kafka-topic": spec.name,
            "x-kafka-key": spec.key,
            "x-kafka-cleanup-policy": "compact" if spec.compacted else "delete",
            "x-kafka-doc": spec.doc,
            **schema,
        }
        out[f"{spec.name}.value.schema.json"] = schema
    return out


def _open(node):
    """Drop `additionalProperties: false`: we may add fields to output records; consumers should ignore them."""
    if isinstance(node, dict):
        return {k: _open(v) for k, v in node.items() if not (k == "additionalProperties" and v is False)}
    if isinstance(node, list):
        return [_open(v) for v in node]
    return node


def settings_doc() -> str:
    """The settings table, from the `Settings` fields (names, defaults, descriptions): the one description."""
    from pydantic import SecretStr

    lines = ["# Settings", "",
             "Environment variables (or a `.env` file), read once in `app/settings.py`. Generated from the",
             "`Settings` fields by `python -m app admin settings`; a test fails when this file is stale.", "",
             "| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = field.default_factory() if field.default_factory is not None else field.default
        if default is None or default == "":
            shown = "(none)" if default is None else "(empty)"
        elif isinstance(default, SecretStr):
            shown = "(secret)"
        else:
            shown = f"`{default if not isinstance(default, bool) else str(default).lower()}`"
        lines.append(f"| `{name.upper()}` | {shown} | {field.description} |")
    return "\n".join(lines) + "\n"


def write_settings_doc(check: bool, path: Path = SETTINGS_DOC) -> int:
    text = settings_doc()
    if check:
        if not path.exists() or path.read_text() != text:
            print(f"stale {path} (run `python -m app admin settings`)", file=sys.stderr)
            return 1
        return 0
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    print(f"wrote {path}")
    return 0


def _render(schema: dict) -> str:
    return json.dumps(schema, indent=2, sort_keys=False) + "\n"


def write_schemas(out_dir: Path, check: bool) -> int:
    stale = []
    for name, schema in schemas().items():
        path = out_dir / name
        text = _render(schema)
        if check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path}")
    if stale:
        print(f"stale schemas (run `python -m app admin schemas`): {', '.join(stale)}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m app admin", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create-topics", help="create missing topics from the registry")
    create.add_argument("--dry-run", action="store_true")
    sch = sub.add_parser("schemas", help="write (or --check) the output topics' JSON Schemas")
    sch.add_argument("--out", type=Path, default=SCHEMA_DIR)
    sch.add_argument("--check", action="store_true")
    sett = sub.add_parser("settings", help="write (or --check) docs/settings.md from the Settings fields")
    sett.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "create-topics":
        lines = asyncio.run(create_topics(get_settings(), args.dry_run))
        for line in lines:
            print(line)
        return 1 if any(line.startswith("failed") for line in lines) else 0
    if args.command == "settings":
        return write_settings_doc(args.check)
    return write_schemas(args.out, args.check)


if __name__ == "__main__":
    sys.exit(main())
