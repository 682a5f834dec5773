"""The ``offload-bridge`` command line: the core commands, composed with each feature's own.

Every failure a user can cause or fix (a bad setting, an unreachable broker, a client install asked to run a
server command) ends in one line on stderr and a non-zero exit code, never a traceback. Nothing imported here
at module level needs the server install: the handlers of server commands import their modules when run.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from kafka.errors import KafkaError

from offload_bridge import acls_cli, dlq_cli
from offload_bridge.analytics import cli as analytics_cli
from offload_bridge.answers import cli as answers_cli
from offload_bridge.case_requests import cli as case_requests_cli
from offload_bridge.case_watch import cli as case_watch_cli
from offload_bridge.cli_support import (
    CommandError,
    Handler,
    ServerInstallMissing,
    Subcommands,
    is_server_module,
    server_command,
)
from offload_bridge.export import cli as export_cli
from offload_bridge.inbox import cli as inbox_cli
from offload_bridge.ingress.cli import register as register_ingress
from offload_bridge.kafka.admin import TopicCreationFailed, ensure_topics
from offload_bridge.kafka.connection import (
    KafkaUnreachable,
    NotAuthorized,
    connection_options,
    metadata_ok,
    refusal,
)
from offload_bridge.kafka.local_broker import BrokerError, LocalBroker
from offload_bridge.kafka.preflight import KafkaTlsError, check_tls
from offload_bridge.kafka.topic_configs import (
    SHORTER_FLAG,
    ConfigReport,
    TopicConfigsFailed,
    apply_configs,
    check_configs,
)
from offload_bridge.settings import Settings, SettingsError, get_settings
from offload_bridge.simulator.cli import register as register_simulator
from offload_bridge.streams.cli import register as register_streams
from offload_bridge.streams.reconcile.cli import register as register_reconcile
from offload_bridge.topics import ALL_TOPICS, TopicMissing, topic_name


def _broker(args: argparse.Namespace, settings: Settings) -> LocalBroker:
    broker = LocalBroker.from_settings(settings)
    port: int | None = getattr(args, "port", None)
    if port is not None:
        broker = LocalBroker(broker.home, port, port + 1, broker.heap)
    return broker


def _external_notice(settings: Settings) -> None:
    cluster = settings.kafka_bootstrap_servers
    print(f"KAFKA_BOOTSTRAP_SERVERS={cluster} names another cluster: nothing local to manage")


def cmd_kafka_fetch(args: argparse.Namespace, settings: Settings) -> int:
    broker = _broker(args, settings)
    downloaded = broker.fetch()
    print(f"Kafka jars {'fetched into' if downloaded else 'already in'} {broker.libs_dir}")
    return 0


def cmd_kafka_start(args: argparse.Namespace, settings: Settings) -> int:
    if settings.uses_external_kafka:
        _external_notice(settings)
        return 0
    broker = _broker(args, settings)
    if broker.start(timeout_s=settings.offload_kafka_start_timeout_s):
        print(f"Kafka broker started on {broker.bootstrap} (pid {broker.pid()}, logs in {broker.logs_dir})")
    else:
        print(f"Kafka broker already running on {broker.bootstrap}")
    return 0


def cmd_kafka_stop(args: argparse.Namespace, settings: Settings) -> int:
    if settings.uses_external_kafka:
        _external_notice(settings)
        return 0
    broker = _broker(args, settings)
    print("Kafka broker stopped" if broker.stop() else "no local Kafka broker was running")
    return 0


def cmd_kafka_status(args: argparse.Namespace, settings: Settings) -> int:
    if settings.uses_external_kafka:
        address = settings.bootstrap_servers
        up = metadata_ok(address, timeout_s=5.0, **connection_options(settings))
    else:
        broker = _broker(args, settings)
        address = broker.bootstrap
        up = broker.is_up(timeout_s=5.0)
        pid = broker.pid()
        if pid is not None:
            address += f" (pid {pid})"
    print(f"Kafka {'up' if up else 'down'} at {address}")
    return 0 if up else 1


def cmd_topics_create(args: argparse.Namespace, settings: Settings) -> int:
    report = ensure_topics(settings)
    for name in report.created:
        print(f"created  {name}")
    for name in report.existing:
        print(f"exists   {name}")
    for name, partitions in report.mismatched.items():
        print(
            f"warning: {name} has {partitions} partitions, OFFLOAD_TOPIC_PARTITIONS is "
            f"{settings.offload_topic_partitions}; caseId-keyed topics must be co-partitioned",
            file=sys.stderr,
        )
    if report.existing:
        # An existing topic keeps its configs: report where they differ, change nothing here.
        existing = [spec for spec in ALL_TOPICS if topic_name(spec, settings) in report.existing]
        try:
            _print_drifts(check_configs(settings, existing))
        except TopicConfigsFailed as error:
            # The topics are there, which is this command's job; a principal allowed to create topics but
            # not to read their configs gets the reason, and `topics check` under one that may.
            print(f"warning: configs not compared with the registry: {error}", file=sys.stderr)
    return 0


def _print_drifts(report: ConfigReport) -> None:
    for name in report.missing:
        print(f"missing  {name}: run `offload-bridge topics create`")
    for drift in report.drifts:
        shorter = f" (shorter: apply needs {SHORTER_FLAG})" if drift.shortens else ""
        print(f"drift    {drift.topic} {drift.difference()}{shorter}")
    if report.drifts:
        count = len(report.drifts)
        print(f"{count} config(s) differ from the registry: `offload-bridge topics apply` aligns them")


def cmd_topics_check(args: argparse.Namespace, settings: Settings) -> int:
    report = check_configs(settings)
    _print_drifts(report)
    if report.clean:
        print(f"every topic matches the registry ({len(ALL_TOPICS)} topics)")
    return 0 if report.clean else 1


def cmd_topics_apply(args: argparse.Namespace, settings: Settings) -> int:
    report = apply_configs(settings, allow_shorter=args.allow_shorter_retention)
    for name in report.checked.missing:
        print(f"missing  {name}: run `offload-bridge topics create`")
    for drift in report.applied:
        print(f"applied  {drift.topic} {drift.change()}")
    for topic, drifts in report.refused.items():
        changes = "; ".join(drift.change() for drift in drifts)
        print(f"refused  {topic}: {changes} keeps less; rerun with {SHORTER_FLAG} to apply", file=sys.stderr)
    if report.failed:
        reasons = "; ".join(f"{topic}: {reason}" for topic, reason in report.failed.items())
        raise CommandError(f"Kafka refused to change topic configs: {reasons}")
    if report.checked.clean:
        print(f"every topic matches the registry ({len(ALL_TOPICS)} topics)")
    return 1 if report.refused or report.checked.missing else 0


def cmd_schemas_export(args: argparse.Namespace, settings: Settings) -> int:
    from offload_bridge import contracts

    directory: Path = args.dir or contracts.SCHEMAS_DIR
    if args.check:
        stale = contracts.drifted(directory)
        for name in stale:
            print(f"stale    {directory / name}")
        return 1 if stale else 0
    changed = contracts.export(directory)
    for name in changed:
        print(f"written  {directory / name}")
    print(f"{len(changed)} file(s) written, {len(contracts.render()) - len(changed)} up to date")
    return 0


def _baseline(args: argparse.Namespace) -> Path:
    """The released baseline to compare with: ``--against`` or the newest under ``--released``."""
    from offload_bridge import contracts

    released: Path = args.released or contracts.RELEASED_DIR
    versions = contracts.released_versions(released)
    if args.against is not None:
        if args.against not in versions:
            raise CommandError(f"no released baseline {args.against} under {released}")
        return released / str(args.against)
    if not versions:
        raise CommandError(
            f"no released baseline under {released}; cut one with `offload-bridge schemas release`"
        )
    return released / versions[-1]


def cmd_schemas_check_compat(args: argparse.Namespace, settings: Settings) -> int:
    from offload_bridge import compatibility, contracts
    from offload_bridge.topics import ALL_TOPICS

    baseline = _baseline(args)
    try:
        breaks = contracts.check_compatibility(baseline)
    except compatibility.UnsupportedSchema as error:
        raise CommandError(f"cannot judge: {error}") from None
    broken = {item.topic for item in breaks}
    for spec in ALL_TOPICS:
        if spec.name not in broken:
            print(f"ok        {spec.name} ({compatibility.rule_for(spec)})")
    for item in breaks:
        print(f"BREAKING  {item}")
    if breaks:
        print(f"{len(breaks)} breaking change(s) against {baseline.name} (docs: Evolve the contracts)")
        return 1
    print(f"compatible with {baseline.name}")
    return 0


def cmd_schemas_release(args: argparse.Namespace, settings: Settings) -> int:
    from offload_bridge import __version__, contracts

    released: Path = args.released or contracts.RELEASED_DIR
    version: str = args.version or __version__
    try:
        written = contracts.release(version, released, accept_breaking=args.accept_breaking)
    except contracts.ReleaseRefused as error:
        raise CommandError(str(error)) from None
    for name in written:
        print(f"written  {released / version / name}")
    print(
        f"baseline {version}: {len(written)} file(s) written"
        if written
        else f"baseline {version} is up to date"
    )
    return 0


def cmd_run(args: argparse.Namespace, settings: Settings) -> int:
    from offload_bridge.run import Stack, StackFailed, run  # the server stack

    step_ms = args.step_ms if args.step_ms is not None else (1000 if args.demo else None)
    stack = Stack(
        settings, run_dir=args.run_dir, simulator_port=args.simulator_port, simulator_step_ms=step_ms
    )
    try:
        return run(stack, demo=args.demo)
    except StackFailed as error:
        raise CommandError(str(error)) from None


def cmd_tail(args: argparse.Namespace, settings: Settings) -> int:
    from offload_bridge.tail import DEFAULT_TOPICS, follow, human_line, spec_for

    topics = args.topic or list(DEFAULT_TOPICS)
    try:
        for name in topics:
            spec_for(name)
    except ValueError as error:
        raise CommandError(str(error)) from None
    colour = sys.stdout.isatty() and not args.json
    try:
        records = follow(
            settings,
            topics,
            case_id=args.case,
            from_beginning=args.from_beginning,
            positioned=lambda: print(f"following {', '.join(topics)}", file=sys.stderr, flush=True),
        )
        for record in records:
            print(record.as_json() if args.json else human_line(record, colour), flush=True)
    except KeyboardInterrupt:
        pass
    return 0


def register_core(commands: Subcommands) -> None:
    kafka = commands.add_parser("kafka", help="run a local single-node Kafka broker (dev and tests)")
    kafka_actions = kafka.add_subparsers(dest="action", required=True, metavar="ACTION")
    for action, handler, text in (
        ("start", cmd_kafka_start, "start the broker and wait until it answers (no-op when running)"),
        ("stop", cmd_kafka_stop, "stop the broker, gracefully then forcefully"),
        ("status", cmd_kafka_status, "exit 0 when the broker answers, 1 when it does not"),
        ("fetch", cmd_kafka_fetch, "download the broker's jars from Maven Central (start does this too)"),
    ):
        sub = kafka_actions.add_parser(action, help=text)
        sub.add_argument("--port", type=int, help="listener port (default OFFLOAD_KAFKA_PORT, 9092)")
        sub.set_defaults(handler=handler)

    topics = commands.add_parser("topics", help="manage the project's topics")
    topics_actions = topics.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = topics_actions.add_parser(
        "create", help="create every missing topic with the registry's configs; report existing ones' drift"
    )
    create.set_defaults(handler=cmd_topics_create)
    check = topics_actions.add_parser(
        "check", help="compare existing topics' configs with the registry; exit 1 when any differs"
    )
    check.set_defaults(handler=cmd_topics_check)
    apply = topics_actions.add_parser(
        "apply", help="set existing topics' configs to the registry's (incremental; others untouched)"
    )
    apply.add_argument(
        SHORTER_FLAG,
        action="store_true",
        help="also apply changes after which a topic keeps less (a shorter retention.ms, compaction)",
    )
    apply.set_defaults(handler=cmd_topics_apply)

    run = commands.add_parser("run", help="run the whole stack on this machine (Ctrl-C stops it)")
    run.add_argument("--demo", action="store_true", help="create simulator cases and show them move")
    run.add_argument("--simulator-port", type=int, default=8900, help="simulator port (default 8900)")
    run.add_argument("--step-ms", type=int, help="simulator step (default 200; 1000 with --demo)")
    run.add_argument(
        "--run-dir",
        type=Path,
        default=Path(".run"),
        help="logs, worker tables and the env file of the commands (default .run)",
    )
    run.set_defaults(handler=cmd_run)

    tail = commands.add_parser("tail", help="follow the topics live, one line per record")
    tail.add_argument(
        "--topic", action="append", help="topic without prefix (repeatable; default case-events and outcomes)"
    )
    tail.add_argument("--case", help="only records of this caseId (or requestId)")
    tail.add_argument("--json", action="store_true", help="one JSON object per record")
    tail.add_argument("--from-beginning", action="store_true", help="start at the oldest record")
    tail.set_defaults(handler=cmd_tail)

    contracts = commands.add_parser("schemas", help="JSON Schemas and AsyncAPI of every topic")
    contracts_actions = contracts.add_subparsers(dest="action", required=True, metavar="ACTION")
    export = contracts_actions.add_parser("export", help="regenerate schemas/*.schema.json and asyncapi.yaml")
    export.add_argument("--dir", type=Path, help="where to write (default: the schemas package)")
    export.add_argument("--check", action="store_true", help="write nothing; exit 1 when files are stale")
    export.set_defaults(handler=cmd_schemas_export)
    released_help = "the folder of released baselines, one per version (default: schemas/released)"
    check = contracts_actions.add_parser(
        "check-compat",
        help="compare every value schema with the last released one; exit 1 on a breaking change",
    )
    check.add_argument("--against", metavar="VERSION", help="a released version (default: the newest)")
    check.add_argument("--released", type=Path, help=released_help)
    check.set_defaults(handler=cmd_schemas_check_compat)
    release = contracts_actions.add_parser(
        "release", help="keep today's value schemas as the baseline of a release (schemas/released/VERSION/)"
    )
    release.add_argument("--version", help="the release (default: the package's version)")
    release.add_argument("--released", type=Path, help=released_help)
    release.add_argument(
        "--accept-breaking", action="store_true", help="cut it even though it breaks the previous baseline"
    )
    release.set_defaults(handler=cmd_schemas_release)


# Each component adds its own subcommands; their handlers import their heavy modules when run, so that
# `offload-bridge kafka status` stays fast and the client commands run without the server install.
REGISTRARS: list[Callable[[Subcommands], None]] = [
    register_core,
    answers_cli.register,
    dlq_cli.register,
    acls_cli.register,
    register_simulator,
    register_ingress,
    register_streams,
    case_requests_cli.register,
    case_watch_cli.register,
    register_reconcile,
    export_cli.register,
    analytics_cli.register,
    inbox_cli.register,
]


# The commands that run part of the server (or call Offload over HTTP); the others are the client's.
SERVER_COMMANDS = ("run", "simulator", "ingress", "worker", "case", "reconcile", "export", "inbox")


# The commands that never talk to Kafka: they start without the TLS check (`kafka` manages the local broker,
# but `kafka status` asks the configured cluster).
KAFKA_FREE_COMMANDS = ("schemas", "simulator", "analytics", "case", "questions")


def talks_to_kafka(args: argparse.Namespace) -> bool:
    if args.command == "kafka":
        return bool(args.action == "status")
    return args.command not in KAFKA_FREE_COMMANDS


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="offload-bridge", description="Offload case API <-> Apache Kafka.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in REGISTRARS:
        register(commands)
    for name in SERVER_COMMANDS:
        command = commands.choices[name]
        command.set_defaults(handler=server_command(command.get_default("handler")))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    handler: Handler = args.handler
    try:
        settings = get_settings()
        if talks_to_kafka(args):
            # A wrong CA, a hostname mismatch or an expired client certificate ends here in one line naming
            # the setting, before a Kafka library retries it in a loop.
            check_tls(settings)
        return handler(args, settings)
    except ServerInstallMissing as error:
        print(error, file=sys.stderr)
        return 2
    except (
        SettingsError,
        KafkaTlsError,
        KafkaUnreachable,
        BrokerError,
        TopicCreationFailed,
        TopicConfigsFailed,
        TopicMissing,
        NotAuthorized,
        CommandError,
    ) as error:
        print(f"offload-bridge: {error}", file=sys.stderr)
        return 2
    except KafkaError as error:
        refused = refusal(error, settings)
        if refused is not None:
            print(f"offload-bridge: {refused}", file=sys.stderr)
            return 2
        print(
            f"offload-bridge: Kafka at {settings.bootstrap_servers}: {type(error).__name__}: {error}",
            file=sys.stderr,
        )
        return 2
    except ModuleNotFoundError as error:
        if not is_server_module(error.name):
            raise
        print(ServerInstallMissing(args.command), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
