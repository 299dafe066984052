"""``telematics operator add|token|disable|list``: who may use the operators' API."""

from __future__ import annotations

import argparse
from typing import Any

from telematics.config import Settings
from telematics.store import operators
from telematics.store.database import run_with_db


def add_arguments(subparsers: Any) -> None:
    """Register the ``operator`` command group on the top-level ``add_subparsers()`` object."""
    group = subparsers.add_parser("operator", help="dispatch-centre operators and API tokens")
    sub = group.add_subparsers(dest="operator_command", required=True)
    add = sub.add_parser("add", help="create an operator; prints only their API token")
    add.add_argument("id")
    add.add_argument("--role", required=True, choices=operators.ROLES)
    add.add_argument(
        "--fleet",
        action="append",
        help="a fleet they may see (repeat); without it: every fleet",
    )
    add.set_defaults(func=_add)
    token = sub.add_parser("token", help="issue another API token; prints only the token")
    token.add_argument("id")
    token.set_defaults(func=_token)
    disable = sub.add_parser("disable", help="disable an operator and revoke their tokens")
    disable.add_argument("id")
    disable.set_defaults(func=_disable)
    sub.add_parser("list", help="list operators").set_defaults(func=_list)


def _add(args: argparse.Namespace, settings: Settings) -> int:
    token = run_with_db(
        settings, lambda conn: operators.add_operator(conn, args.id, args.role, args.fleet)
    )
    print(token)  # only the token on stdout, so scripts can capture it
    return 0


def _token(args: argparse.Namespace, settings: Settings) -> int:
    print(run_with_db(settings, lambda conn: operators.new_operator_token(conn, args.id)))
    return 0


def _disable(args: argparse.Namespace, settings: Settings) -> int:
    run_with_db(settings, lambda conn: operators.disable_operator(conn, args.id))
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    for op, enabled in run_with_db(settings, operators.list_operators):
        fleets = "all fleets" if op.fleets is None else ",".join(sorted(op.fleets))
        print(f"{op.id}\t{op.role}\t{fleets}\t{'enabled' if enabled else 'disabled'}")
    return 0
