"""``telematics user add|password|token|disable|list``: who may use the dashboard and the
operators' API."""

from __future__ import annotations

import argparse
import getpass
import sys
from typing import Any

import asyncpg

from telematics.config import Settings
from telematics.dashboard.passwords import WeakPassword
from telematics.errors import TelematicsError
from telematics.store import operators, sessions
from telematics.store.database import run_with_db


def add_arguments(subparsers: Any) -> None:
    """Register the ``user`` command group on the top-level ``add_subparsers()`` object."""
    group = subparsers.add_parser("user", help="dashboard users (operators) and API tokens")
    sub = group.add_subparsers(dest="user_command", required=True)
    add = sub.add_parser("add", help="create a user with a password for the dashboard")
    add.add_argument("id")
    add.add_argument("--role", required=True, choices=operators.ROLES)
    add.add_argument(
        "--fleet", action="append", help="a fleet they may see (repeat); without it: every fleet"
    )
    add.add_argument(
        "--password-stdin", action="store_true", help="read the password from stdin (scripts)"
    )
    add.set_defaults(func=_add)
    password = sub.add_parser("password", help="set a new password")
    password.add_argument("id")
    password.add_argument("--password-stdin", action="store_true")
    password.set_defaults(func=_password)
    token = sub.add_parser("token", help="issue an API token for scripts; prints only the token")
    token.add_argument("id")
    token.set_defaults(func=_token)
    disable = sub.add_parser("disable", help="disable a user: tokens revoked, sessions ended")
    disable.add_argument("id")
    disable.set_defaults(func=_disable)
    sub.add_parser("list", help="list users").set_defaults(func=_list)


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if getpass.getpass("again: ") != first:
        raise TelematicsError("passwords differ")
    return first


def _add(args: argparse.Namespace, settings: Settings) -> int:
    password = _read_password(args.password_stdin)

    async def work(conn: asyncpg.Connection) -> None:
        async with conn.transaction():
            await operators.add_operator(conn, args.id, args.role, args.fleet)
            await sessions.set_password(conn, args.id, password)

    try:
        run_with_db(settings, work)
    except WeakPassword as exc:
        raise TelematicsError(str(exc)) from None
    print(f"user {args.id} ({args.role}) created", file=sys.stderr)
    return 0


def _password(args: argparse.Namespace, settings: Settings) -> int:
    password = _read_password(args.password_stdin)
    try:
        run_with_db(settings, lambda conn: sessions.set_password(conn, args.id, password))
    except WeakPassword as exc:
        raise TelematicsError(str(exc)) from None
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
