"""``telematics insurer add|key|policy|revoke-key|revoke-policy|disable|list|rollup``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

import asyncpg

from telematics.cliargs import iso_datetime
from telematics.config import Settings
from telematics.insurer.model import CONSENTS, KEY_SCOPES
from telematics.insurer.rollup import roll_up_now
from telematics.insurer.scoring import load_weights
from telematics.insurer.store import insurers
from telematics.store.database import run_with_db


def add_arguments(subparsers: Any) -> None:
    """Register the ``insurer`` command group on the top-level ``add_subparsers()`` object."""
    group = subparsers.add_parser("insurer", help="insurers, their policies and API keys")
    sub = group.add_subparsers(dest="insurer_command", required=True)
    add = sub.add_parser("add", help="create an insurer")
    add.add_argument("id")
    add.add_argument("--name", required=True)
    add.set_defaults(func=_add)
    key = sub.add_parser("key", help="issue an API key; prints only the key")
    key.add_argument("id")
    key.add_argument("--scope", action="append", choices=KEY_SCOPES, help="repeat; default: all")
    key.set_defaults(func=_key)
    policy = sub.add_parser("policy", help="cover a fleet or a vehicle; prints the policy id")
    policy.add_argument("id", help="the insurer")
    target = policy.add_mutually_exclusive_group(required=True)
    target.add_argument("--fleet")
    target.add_argument("--vehicle")
    policy.add_argument("--from", dest="starts_at", type=iso_datetime, required=True)
    policy.add_argument("--until", dest="ends_at", type=iso_datetime, required=True)
    policy.add_argument(
        "--consent", action="append", choices=CONSENTS, required=True, help="repeat"
    )
    policy.add_argument("--number", help="the insurer's policy number")
    policy.set_defaults(func=_policy)
    rk = sub.add_parser("revoke-key", help="revoke keys by their prefix (first 10 characters)")
    rk.add_argument("prefix")
    rk.set_defaults(func=_revoke_key)
    rp = sub.add_parser("revoke-policy", help="end a policy's access now")
    rp.add_argument("policy_id")
    rp.set_defaults(func=_revoke_policy)
    disable = sub.add_parser("disable", help="disable an insurer and revoke its keys")
    disable.add_argument("id")
    disable.set_defaults(func=_disable)
    sub.add_parser("list", help="insurers and their policies").set_defaults(func=_list)
    sub.add_parser(
        "rollup",
        help="sum every closed vehicle-hour (and slice of the open ones) not rolled up yet,"
        " now and at full speed (the server does it in the background; after an upgrade"
        " this catches up at once)",
    ).set_defaults(func=_rollup)


def _add(args: argparse.Namespace, settings: Settings) -> int:
    run_with_db(settings, lambda conn: insurers.add_insurer(conn, args.id, args.name))
    return 0


def _key(args: argparse.Namespace, settings: Settings) -> int:
    print(run_with_db(settings, lambda conn: insurers.issue_key(conn, args.id, args.scope)))
    return 0


def _policy(args: argparse.Namespace, settings: Settings) -> int:
    policy_id = run_with_db(
        settings,
        lambda conn: insurers.add_policy(
            conn,
            args.id,
            starts_at=args.starts_at,
            ends_at=args.ends_at,
            consent=args.consent,
            fleet_id=args.fleet,
            vehicle_id=args.vehicle,
            policy_number=args.number,
        ),
    )
    print(policy_id)
    return 0


def _revoke_key(args: argparse.Namespace, settings: Settings) -> int:
    n = run_with_db(settings, lambda conn: insurers.revoke_key(conn, args.prefix))
    print(f"revoked {n} key(s)")
    return 0


def _revoke_policy(args: argparse.Namespace, settings: Settings) -> int:
    run_with_db(settings, lambda conn: insurers.revoke_policy(conn, args.policy_id))
    return 0


def _disable(args: argparse.Namespace, settings: Settings) -> int:
    run_with_db(settings, lambda conn: insurers.disable_insurer(conn, args.id))
    return 0


def _list(args: argparse.Namespace, settings: Settings) -> int:
    found = run_with_db(settings, insurers.list_insurers)
    policies = run_with_db(settings, lambda conn: insurers.list_policies(conn))
    for insurer_id, name, enabled in found:
        print(f"{insurer_id}\t{name}\t{'enabled' if enabled else 'disabled'}")
        for p in (p for p in policies if p.insurer_id == insurer_id):
            what = f"fleet {p.fleet_id}" if p.fleet_id else f"vehicle {p.vehicle_id}"
            state = "revoked" if p.revoked_at else "active"
            print(
                f"  {p.id}\t{what}\t{p.starts_at.isoformat()} – {p.ends_at.isoformat()}"
                f"\t{','.join(p.consent)}\t{state}"
            )
    return 0


def _rollup(args: argparse.Namespace, settings: Settings) -> int:
    weights = load_weights()

    async def run(conn: asyncpg.Connection) -> int:
        total = 0
        while True:
            # wait: behind a server's batch, not instead of it
            done = await roll_up_now(conn, weights, limit=1000, wait=True)
            if not done:
                return total
            total += done
            print(f"rolled up {total} vehicle-hour(s)…", file=sys.stderr)

    print(f"rolled up {run_with_db(settings, run)} vehicle-hour(s)")
    return 0
