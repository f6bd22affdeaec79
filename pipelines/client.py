"""Compile the pipeline package, and send it to a KFP endpoint as a run or a schedule.

Submitting uploads the package as a version of the `pad` pipeline (named by
the package's hash, so the same package is uploaded once) and starts a run of
that version; scheduling creates a recurring run of it instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from padcore.errors import PadError

HOST_ENV = "KFP_HOST"
TOKEN_ENV = "KFP_TOKEN"


def compile_package(out: str | os.PathLike, placement_path: str | os.PathLike | None = None,
                    recurring: bool = False) -> Path:
    """Write the pipeline package (IR YAML; kfp-kubernetes settings in its second document).

    `recurring`: the package for schedules (no step cached; data as of the scheduled time).
    """
    from kfp import compiler

    from pipelines.pad_pipeline import build_pipeline
    from pipelines.placement import load_placement

    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    compiler.Compiler().compile(build_pipeline(load_placement(placement_path), recurring=recurring), str(out))
    return out


def cached_tasks(package: Path) -> list[str]:
    """Tasks of a package, in any of its DAGs, that KFP may answer from its cache."""
    spec = next(yaml.safe_load_all(package.read_text()))
    dags = [spec["root"]["dag"], *(c["dag"] for c in spec.get("components", {}).values() if "dag" in c)]
    return sorted(name for dag in dags for name, task in dag["tasks"].items()
                  if task.get("cachingOptions", {}).get("enableCache"))


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`k=v` pairs -> run arguments; a value that parses as JSON (numbers, true, {...}) is taken as such."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PadError(f"--param {pair!r}: expected NAME=VALUE")
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            params[key] = value
    return params


def check_params(package: Path, params: dict[str, Any]) -> None:
    """`params` checked against the package's pipeline before anything is sent (see `check_run`)."""
    spec = next(yaml.safe_load_all(package.read_text()))
    declared = spec["root"].get("inputDefinitions", {}).get("parameters", {})
    check_run({name: p.get("defaultValue") for name, p in declared.items()}, params)


def check_run(defaults: dict[str, Any], params: dict[str, Any]) -> None:
    """Refuse names the pipeline (with these `defaults`) does not take, and values its `check` step or
    preprocess would refuse."""
    import inspect

    from components.base import check_parameters, shard_specs
    from padcore.dataset import Protocol

    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise PadError(f"unknown pipeline parameter(s) {unknown}; known: {', '.join(sorted(defaults))}")
    values = {**defaults, **params}
    check_parameters(**{name: values[name] for name in inspect.signature(check_parameters).parameters})
    Protocol.from_options(**{name: values[name] for name in ("max_len", "min_len", "buckets")})
    shard_specs(values["embed_shards"])


def check_cron(expr: str) -> str:
    """KFP cron has 6 fields, seconds first: `0 0 3 * * 1` is 03:00 every Monday."""
    fields = expr.split()
    if len(fields) != 6:
        raise PadError(
            f"--cron {expr!r} has {len(fields)} field(s); KFP cron needs 6, seconds first "
            "(e.g. '0 0 3 * * 1' = 03:00 every Monday)"
        )
    return " ".join(fields)


@dataclass
class Endpoint:
    """How to reach and authenticate to a KFP API server."""

    host: str | None = None  # else $KFP_HOST
    token: str | None = None  # bearer token; else $KFP_TOKEN; else the kube context's credentials
    namespace: str | None = None  # multi-user deployments only
    kube_context: str | None = None  # without a host: reach the API through this context's API-server proxy

    def connect(self):
        import kfp

        host = self.host or os.environ.get(HOST_ENV)
        if not host and not self.kube_context:
            raise PadError(f"no KFP endpoint: pass --host URL or set {HOST_ENV} (or --kube-context to go through the cluster's API proxy)")
        kwargs: dict[str, Any] = {"host": host, "existing_token": self.token or os.environ.get(TOKEN_ENV) or None}
        if self.namespace:
            kwargs["namespace"] = self.namespace
        if self.kube_context:
            kwargs["kube_context"] = self.kube_context
        with warnings.catch_warnings():  # "only works with KFP v2.0.0-beta.2 and later": pad pins KFP 2.17
            warnings.filterwarnings("ignore", category=FutureWarning, module="kfp")
            return kfp.Client(**kwargs)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _by_name(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def upload(client, package: Path, name: str) -> tuple[str, str]:
    """Upload `package` as pipeline `name` (or a new version of it); return (pipeline id, version id)."""
    version_name = f"{name}-{_sha(package)}"
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(str(package), pipeline_name=name, description="PAD recommender pipeline")
        versions = client.list_pipeline_versions(pipeline.pipeline_id, page_size=1).pipeline_versions or []
        if not versions:
            raise PadError(f"KFP created pipeline {name!r} ({pipeline.pipeline_id}) without a version")
        return pipeline.pipeline_id, versions[0].pipeline_version_id
    found = client.list_pipeline_versions(pipeline_id, filter=_by_name(version_name)).pipeline_versions or []
    if found:
        return pipeline_id, found[0].pipeline_version_id
    version = client.upload_pipeline_version(str(package), version_name, pipeline_id=pipeline_id)
    return pipeline_id, version.pipeline_version_id


@dataclass
class Submission:
    """Where the package goes and with what; `package` None = compile from `placement`."""

    endpoint: Endpoint
    params: dict[str, Any]
    experiment: str = "pad"
    name: str = ""  # run / schedule name; "" = derived
    package: str | None = None
    placement: str | None = None
    service_account: str | None = None

    def prepare(self, recurring: bool = False):
        """Connect, upload, and find the experiment: (client, experiment id, pipeline id, version id).

        `recurring`: compile the recurring package; a given package must cache no step.
        """
        from pipelines.pad_pipeline import PIPELINE_NAME

        with tempfile.TemporaryDirectory() as tmp:
            package = (Path(self.package) if self.package
                       else compile_package(Path(tmp) / "pad.yaml", self.placement, recurring=recurring))
            if not package.is_file():
                raise PadError(f"{package}: pipeline package not found")
            check_params(package, self.params)
            if recurring and cached_tasks(package):
                raise PadError(
                    f"{package}: caches {', '.join(cached_tasks(package))}; a recurring run would be answered from "
                    "the cache with last run's data. Compile it with `pad pipeline compile --recurring`")
            client = self.endpoint.connect()
            pipeline_id, version_id = upload(client, package, PIPELINE_NAME)
        experiment = client.create_experiment(self.experiment)
        return client, experiment.experiment_id, pipeline_id, version_id


def submit(sub: Submission) -> str:
    """Start one run; return its id."""
    client, experiment_id, pipeline_id, version_id = sub.prepare()
    run = client.run_pipeline(
        experiment_id=experiment_id,
        job_name=sub.name or f"pad {sub.params.get('source', 'prime_pantry')}",
        params=sub.params,
        pipeline_id=pipeline_id,
        version_id=version_id,
        service_account=sub.service_account,
    )
    return run.run_id


def schedule(sub: Submission, cron: str) -> str:
    """Create a recurring run (one at a time, no catch-up of missed slots); return its id.

    It runs the recurring package: no step cached, the data bounded by each run's scheduled time.
    """
    cron = check_cron(cron)
    client, experiment_id, pipeline_id, version_id = sub.prepare(recurring=True)
    recurring = client.create_recurring_run(
        experiment_id=experiment_id,
        job_name=sub.name or f"pad retrain {cron}",
        cron_expression=cron,
        max_concurrency=1,
        no_catchup=True,
        params=sub.params,
        pipeline_id=pipeline_id,
        version_id=version_id,
        service_account=sub.service_account,
    )
    return recurring.recurring_run_id
