"""`moorage credentials create|list|delete`: the access keys that `moorage serve --auth sigv4` accepts.

`create --output json` prints what `aws iam create-access-key` prints (`{"AccessKey": {...}}`), so
scripts written for IAM can read it; `list` never prints a secret.
"""

from __future__ import annotations

import argparse
import json
import os

from moorage.credentials import AccessKey, create_key, credentials_path, delete_key, list_keys
from moorage.settings import Settings

__all__ = ["register"]

EXIT_OK = 0


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "credentials",
        help="manage the access keys that `moorage serve --auth sigv4` accepts",
        description=(
            "Create, list and delete the AWS-style access keys that clients sign requests with when the "
            "server runs with --auth sigv4. Keys live in the data dir (credentials.json, mode 0600)."
        ),
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    create = actions.add_parser("create", help="create an access key and print its secret")
    create.add_argument(
        "--role",
        choices=("admin", "invoke"),
        default="admin",
        help="admin: every API (default); invoke: only InvokeEndpoint",
    )
    create.add_argument(
        "--endpoints",
        help="with --role invoke: the endpoints this key may invoke, comma-separated (default: all)",
    )
    _common(create)
    create.set_defaults(func=_create)

    listing = actions.add_parser("list", help="list the access keys (never their secrets)")
    _common(listing)
    listing.set_defaults(func=_list)

    delete = actions.add_parser("delete", help="delete an access key; a running server refuses it at once")
    delete.add_argument("access_key_id", metavar="ACCESS_KEY_ID")
    _common(delete)
    delete.set_defaults(func=_delete)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", help="the server's data dir (default ~/.local/share/moorage)")
    parser.add_argument("--output", choices=("text", "json"), default="text", help="output format")


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_environ(os.environ, data_dir=args.data_dir)


def _create(args: argparse.Namespace) -> int:
    settings = _settings(args)
    endpoints = [name.strip() for name in (args.endpoints or "").split(",") if name.strip()]
    key = create_key(settings.data_dir, args.role, endpoints)
    if args.output == "json":
        document = {"AccessKey": {"AccessKeyId": key.access_key_id, "SecretAccessKey": key.secret_access_key}}
        print(json.dumps(document, indent=4))
        return EXIT_OK
    print(f"AccessKeyId      {key.access_key_id}")
    print(f"SecretAccessKey  {key.secret_access_key}")
    print(f"Role             {_describe_role(key)}")
    print(
        f"\nSaved in {credentials_path(settings.data_dir)}. Give the pair to a client, for example:\n"
        f"  export AWS_ACCESS_KEY_ID={key.access_key_id} AWS_SECRET_ACCESS_KEY=<the secret above>"
    )
    return EXIT_OK


def _describe_role(key: AccessKey) -> str:
    if key.role == "invoke":
        return f"invoke ({', '.join(key.endpoints) if key.endpoints else 'any endpoint'})"
    return key.role


def _list(args: argparse.Namespace) -> int:
    keys = list_keys(_settings(args).data_dir)
    if args.output == "json":
        metadata = [
            {
                "AccessKeyId": key.access_key_id,
                "Status": "Active",
                "CreateDate": key.created,
                "Role": key.role,
                "Endpoints": list(key.endpoints),
            }
            for key in keys
        ]
        print(json.dumps({"AccessKeyMetadata": metadata}, indent=4))
        return EXIT_OK
    if not keys:
        print("No access keys. Create one with: moorage credentials create")
        return EXIT_OK
    for key in keys:
        print(f"{key.access_key_id}  {key.created}  {_describe_role(key)}")
    return EXIT_OK


def _delete(args: argparse.Namespace) -> int:
    delete_key(_settings(args).data_dir, args.access_key_id)
    if args.output == "text":
        print(f"Deleted access key {args.access_key_id}.")
    return EXIT_OK
