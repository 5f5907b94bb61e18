#!/usr/bin/env python3
"""Deploy notebooks/ and the demo job to a real Databricks workspace.

    DATABRICKS_HOST=https://<workspace> DATABRICKS_TOKEN=... \
        .venv/bin/python scripts/deploy_demo.py --node-type i3.xlarge --workers 1

Credentials come from databricks-sdk unified auth (env vars, ~/.databrickscfg profile
via --profile, OAuth, Azure CLI...). Idempotent: run it again after changing a notebook.
The job runs on a new job cluster with the given settings; the service's embedded
workspace deploys the same job on serverless compute by itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from databricks.sdk import WorkspaceClient

from app.settings import Settings
from app.workspace.deploy import ClusterSpec, deploy_demo


def main() -> int:
    defaults, settings = ClusterSpec(), Settings()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", default=settings.databricks_profile, help="~/.databrickscfg profile")
    parser.add_argument("--job-name", default=settings.demo_job_name)
    parser.add_argument("--notebook-dir", default=settings.notebook_dir)
    parser.add_argument("--spark-version", default=defaults.spark_version)
    parser.add_argument(
        "--node-type", default=defaults.node_type_id, help="e.g. i3.xlarge (AWS), Standard_DS3_v2 (Azure)"
    )
    parser.add_argument("--workers", type=int, default=defaults.num_workers)
    args = parser.parse_args()
    if not (settings.databricks_host or args.profile):
        sys.exit("set DATABRICKS_HOST (and credentials) or pass --profile: this deploys to a real workspace")

    w = WorkspaceClient(host=settings.databricks_host, profile=args.profile)
    cluster = ClusterSpec(args.spark_version, args.node_type, args.workers)
    job_id = deploy_demo(w, args.notebook_dir, args.job_name, cluster)
    print(f"notebooks in {args.notebook_dir}; job {args.job_name!r} is {w.config.host}/jobs/{job_id}")
    print("Start DARA with the same DATABRICKS_* settings and a DARA_PUBLIC_URL the workspace can reach.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
