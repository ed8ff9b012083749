"""Submit a Parley training run as a Kubernetes Job (the command backend; standard library only).

    PARLEY_TRAINING_COMMAND=python /srv/parley/app/deploy/training/submit_k8s_job.py {run_id}
      {stage} {train_path} {validation_path} {base_path} {reward_model_path} {output_dir}
      {hyperparameters_json} {events_path} {report_url}
    PARLEY_TRAINING_CANCEL_COMMAND=kubectl delete job {external_id} --ignore-not-found

Creates a Secret holding the run's token (PARLEY_RUN_TOKEN) and the Job from k8s-job.yaml
beside this file, and prints the Job's name (Parley keeps it for the cancel command). Set
PARLEY_TRAINING_IMAGE to the image with Parley installed, KUBECTL to another kubectl; --dry-run
prints the manifests instead of creating them.
"""

from __future__ import annotations

import json
import os
import string
import subprocess
import sys
from pathlib import Path

FIELDS = (
    "RUN_ID", "STAGE", "TRAIN_PATH", "VALIDATION_PATH", "BASE_PATH", "REWARD_MODEL_PATH",
    "OUTPUT_DIR", "HYPERPARAMETERS_JSON", "EVENTS_PATH", "REPORT_URL",
)  # fmt: skip


def manifests(values: dict[str, str], token: str, image: str) -> tuple[str, str]:
    """The Job and its token's Secret, as YAML (JSON-quoted scalars are valid YAML)."""
    name = f"parley-run-{values['RUN_ID']}"
    quoted = {key: json.dumps(value) for key, value in values.items()}
    quoted.update(JOB_NAME=name, IMAGE=json.dumps(image), RUN_ID=json.dumps(values["RUN_ID"]))
    template = string.Template((Path(__file__).with_name("k8s-job.yaml")).read_text())
    job = template.substitute(quoted)
    secret = json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name},
            "type": "Opaque",
            "stringData": {"token": token},
        }
    )
    return job, secret


def main(argv: list[str]) -> int:
    dry_run = "--dry-run" in argv
    args = [a for a in argv if a != "--dry-run"]
    if len(args) != len(FIELDS):
        print(f"usage: submit_k8s_job.py [--dry-run] {' '.join(FIELDS)}", file=sys.stderr)
        return 2
    values = dict(zip(FIELDS, args, strict=True))
    token = os.environ.get("PARLEY_RUN_TOKEN", "")
    if not token:
        print("PARLEY_RUN_TOKEN is not set.", file=sys.stderr)
        return 2
    image = os.environ.get("PARLEY_TRAINING_IMAGE", "parley:latest")
    job, secret = manifests(values, token, image)
    if dry_run:
        print(secret)
        print("---")
        print(job)
        return 0
    kubectl = os.environ.get("KUBECTL", "kubectl")
    for manifest in (secret, job):
        subprocess.run([kubectl, "create", "-f", "-"], input=manifest, text=True, check=True)  # noqa: S603
    print(f"parley-run-{values['RUN_ID']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
