#!/usr/bin/env python3
"""Start a DARA run, or report on it: the original example's `trigger.py`, grown up.

    python scripts/trigger.py --id foo                    # demo notebook job, as GET /run
    python scripts/trigger.py --id foo --wait             # ...and wait for its result
    python scripts/trigger.py --id bar --pipeline notebook_job --param job=dara-demo \
        --param 'params={"name": "ada"}'

The service is `--service`, else `DARA_URL`, else `http://127.0.0.1:$DARA_PORT` (8000), and
`DARA_API_TOKEN`, when set, is sent as the bearer token. Standard library only, so it runs with
any Python 3.9+ and no install.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

FINISHED = {"done", "failed", "cancelled", "timed_out"}


def call(method: str, url: str, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json"}
    if os.environ.get("DARA_API_TOKEN"):
        headers["Authorization"] = f"Bearer {os.environ['DARA_API_TOKEN']}"
    request = urllib.request.Request(url, data, headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=90) as response:
            return json.load(response)
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")
        try:
            detail = json.loads(detail).get("detail", detail)
        except ValueError:
            pass
        sys.exit(f"DARA answered {error.code}: {detail}")
    except urllib.error.URLError as error:
        sys.exit(f"cannot reach DARA at {url}: {error.reason} (is `scripts/serve` running?)")


def parse_param(text: str) -> tuple[str, object]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"--param wants key=value, got {text!r}")
    try:
        return key, json.loads(value)
    except ValueError:
        return key, value


def report(run: dict) -> int:
    status = run["status"]
    if status == "done":
        print(f"done: {json.dumps(run.get('result'))}")
        return 0
    if status in FINISHED:
        print(f"{status}: {run.get('error')}")
        return 1
    print("working on it")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--id", required=True, help="the run's id")
    parser.add_argument("--url", help="callback base URL the notebook calls (default: the service's)")
    parser.add_argument("--pipeline", help="pipeline to start (default: the demo notebook job)")
    parser.add_argument(
        "--param",
        action="append",
        type=parse_param,
        default=[],
        metavar="KEY=VALUE",
        help="pipeline parameter; VALUE is JSON or text",
    )
    parser.add_argument("--wait", action="store_true", help="wait for the run to finish")
    default_service = os.environ.get("DARA_URL") or f"http://127.0.0.1:{os.environ.get('DARA_PORT') or 8000}"
    parser.add_argument("--service", default=default_service, help=f"DARA's base URL (default: {default_service})")
    args = parser.parse_args()
    base = args.service.rstrip("/")

    if args.pipeline is None:
        query = {"id": args.id} | ({"url": args.url} if args.url else {})
        run = call("GET", f"{base}/run?{urllib.parse.urlencode(query)}")
    else:
        params = dict(args.param) | ({"url": args.url} if args.url else {})
        run = call("POST", f"{base}/runs", {"pipeline": args.pipeline, "id": args.id, "params": params})

    started = time.monotonic()
    while args.wait and run["status"] not in FINISHED:
        run = call("GET", f"{base}/runs/{urllib.parse.quote(args.id)}?wait=30")
        steps = run.get("steps", [])
        done = sum(step["state"] != "pending" for step in steps)
        print(f"  {run['status']}: {done}/{len(steps)} steps, {time.monotonic() - started:.0f}s", file=sys.stderr)
    return report(run)


if __name__ == "__main__":
    sys.exit(main())
