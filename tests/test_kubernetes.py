"""deploy/kubernetes: the manifests validate offline against Kubernetes' schemas and fit together."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from smtpbench.config import load_toml
from smtpbench.load.profile import profile_from_dict

DEPLOY = Path(__file__).resolve().parent.parent / "deploy" / "kubernetes"
#: The oldest Kubernetes still supported by its project that has Indexed Jobs' every field used here.
VERSIONS = ("1.31.0", kubernetes_validate.latest_version())


def manifests() -> dict[str, dict[str, Any]]:
    docs = {}
    for path in sorted(DEPLOY.glob("*.yaml")):
        (doc,) = list(yaml.safe_load_all(path.read_text()))
        docs[path.name] = doc
    return docs


@pytest.mark.parametrize("version", VERSIONS)
def test_manifests_validate_strictly_offline(version: str) -> None:
    docs = manifests()
    assert set(docs) == {"volume.yaml", "profile.yaml", "shards-job.yaml", "merge-job.yaml", "fetch-pod.yaml"}
    for name, doc in docs.items():
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(f"{name}: {exc.message} at {list(exc.path)}") from None


def test_misspelt_field_is_caught() -> None:
    """The check above can fail: strict validation refuses an unknown field."""
    job = manifests()["shards-job.yaml"]
    job["spec"]["completionsMode"] = "Indexed"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(job, kubernetes_validate.latest_version(), strict=True)


def env_of(container: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container.get("env", [])}


def test_indexed_job_shards_and_the_merge_fit_together(tmp_path: Path) -> None:
    docs = manifests()
    job = docs["shards-job.yaml"]["spec"]
    assert job["completionMode"] == "Indexed"
    (shard,) = job["template"]["spec"]["containers"]
    assert job["completions"] == job["parallelism"] == int(env_of(shard)["SHARDS"])
    command = " ".join(shard["command"] + shard["args"])
    assert '--shard "$JOB_COMPLETION_INDEX/$SHARDS"' in command and '--start-at "$START_AT"' in command
    assert '--results-dir "/results/$RUN/shard-$JOB_COMPLETION_INDEX"' in command
    (merge,) = docs["merge-job.yaml"]["spec"]["template"]["spec"]["containers"]
    assert 'merge /results/"$RUN"/shard-* -o /results/"$RUN"/merged' in " ".join(merge["args"])
    claim = docs["volume.yaml"]["metadata"]["name"]
    for doc in (docs["shards-job.yaml"]["spec"]["template"], docs["merge-job.yaml"]["spec"]["template"]):
        volumes = {v["name"]: v for v in doc["spec"]["volumes"]}
        assert volumes["results"]["persistentVolumeClaim"]["claimName"] == claim
    mounted = {v["name"]: v for v in job["template"]["spec"]["volumes"]}["profile"]["configMap"]["name"]
    assert mounted == docs["profile.yaml"]["metadata"]["name"]
    # The ConfigMap's profile is a valid profile for our own loader.
    toml = tmp_path / "profile.toml"
    toml.write_text(docs["profile.yaml"]["data"]["profile.toml"])
    profile = profile_from_dict(load_toml(str(toml)), str(toml))
    assert profile.workload.seed == 20261202


def test_dockerfile_installs_the_package_from_the_repository() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert text.startswith("#") and "FROM python:3.11-slim" in text
    assert "COPY smtpbench ./smtpbench" in text and "pip install --no-cache-dir ." in text
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().split()
    assert "!smtpbench" in ignore and "!pyproject.toml" in ignore
