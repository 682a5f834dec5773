"""CLI: ``offload-bridge acls --principal ROLE=PRINCIPAL ... [--format FORMAT] [--apply]``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from offload_bridge.cli_support import CommandError
from offload_bridge.roles import Role, RolesConflict
from offload_bridge.settings import Settings

if TYPE_CHECKING:
    from offload_bridge.cli_support import Subcommands

FORMATS = ("table", "kafka-acls", "strimzi")


def cmd_acls(args: argparse.Namespace, settings: Settings) -> int:
    from offload_bridge import acls

    try:
        principals = [acls.parse_principal(text) for text in args.principal]
        granted = acls.grants(principals, settings)
        if args.apply:
            report = acls.apply(granted, settings)
            for acl in report.created:
                print(f"created  {acl}")
            for acl in report.existing:
                print(f"exists   {acl}")
            print(f"{len(report.created)} ACL(s) created, {len(report.existing)} already there")
            return 0
        if args.format == "kafka-acls":
            print(acls.render_kafka_acls(granted, settings))
        elif args.format == "strimzi":
            print(acls.render_strimzi(granted, settings, args.strimzi_cluster))
        else:
            print(acls.render_table(granted))
    except (acls.AclsError, acls.ApplyFailed, RolesConflict) as error:
        raise CommandError(str(error)) from None
    return 0


def register(commands: Subcommands) -> None:
    roles = ", ".join(Role)
    parser = commands.add_parser(
        "acls",
        help="the Kafka permissions of each role (ingress, worker, teams, ...): print them or apply them",
        description=f"Roles: {roles}. Each role's permissions derive from the topic registry; the roles not "
        "given are left out.",
    )
    parser.add_argument(
        "--principal",
        action="append",
        required=True,
        metavar="ROLE=PRINCIPAL",
        help="a role and its Kafka principal, e.g. teams=User:billing (NAME alone: User:NAME); repeatable",
    )
    parser.add_argument("--format", choices=FORMATS, default="table", help="what to print (default table)")
    parser.add_argument(
        "--strimzi-cluster",
        default="my-cluster",
        metavar="NAME",
        help="--format strimzi: the Kafka resource the users and topics belong to (default my-cluster)",
    )
    parser.add_argument(
        "--apply",
        action="store_true",
        help="create the missing ACLs through the Admin API (as a principal allowed to), list what exists",
    )
    parser.set_defaults(handler=cmd_acls)
