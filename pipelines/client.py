"""Compile the pipeline package, and send it to a KFP endpoint as a run or a schedule.

Submitting uploads the package as a version of pipeline `pad` (schedules: of
`pad-recurring`), named by the package's hash so that the same package is
uploaded once, and starts a run of that version; scheduling creates a
recurring run instead. What is sent is what the KFP 2.17 API server accepts:
parameters of exactly their declared types, a recurring run with a
concurrency of 1 to 10 (kubeflow/pipelines 2.17.0 backend/src/apiserver:
template/v2_template.go validatePipelineJobInputs, server/api_converter.go
toModelJob). A host that cannot be reached, or that refuses, is one line.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from padcore.errors import PadError

HOST_ENV = "KFP_HOST"
TOKEN_ENV = "KFP_TOKEN"
KFP_NAMESPACE = "kubeflow"  # where KFP standalone runs (k8s/kfp); the API-server proxy path goes through it
# IR parameter types (and the SDK's own names, for a pipeline function's inputs) -> the JSON type the API takes
TYPES = {"STRING": str, "NUMBER_INTEGER": int, "NUMBER_DOUBLE": float, "BOOLEAN": bool, "STRUCT": dict, "LIST": list,
         "String": str, "Integer": int, "Float": float, "Boolean": bool, "Dict": dict, "List": list}
WORDS = {str: "a string", int: "a whole number", float: "a number", bool: "true or false", dict: "a JSON object",
         list: "a JSON list"}


def compile_package(out: str | os.PathLike, placement_path: str | os.PathLike | None = None,
                    recurring: bool = False, images: str | os.PathLike | None = None,
                    allow_unbuilt: bool = False) -> Path:
    """Write the pipeline package (IR YAML; kfp-kubernetes settings in its second document).

    `recurring`: the package for schedules (pipeline `pad-recurring`: data as of the scheduled time).
    `images`: the image record (default `pipelines.images.record_path()`); `allow_unbuilt` names unbuilt images.
    """
    from kfp import compiler

    from pipelines.images import image_refs
    from pipelines.pad_pipeline import build_pipeline
    from pipelines.placement import load_placement, seconds

    placement = load_placement(placement_path)
    refs = image_refs(placement.targets(), placement.cluster.shape, images, allow_unbuilt, placement.source)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.stem}.tmp{out.suffix or '.yaml'}")
    try:
        compiler.Compiler().compile(build_pipeline(placement, refs, recurring=recurring), str(tmp))
        spec, platform = list(yaml.safe_load_all(tmp.read_text()))
        longest = longest_chain(spec, platform)
        if longest > seconds(placement.run_timeout):
            raise PadError(f"{placement.source}: run_timeout {placement.run_timeout} is shorter than the pipeline's "
                           f"slowest chain of steps with all their retries ({longest} s): raise it")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def retry_window(policy: dict, deadline: int) -> int:
    """Seconds a task with this IR retry policy and pod deadline may take, every attempt and wait included."""
    retries = int(policy.get("maxRetryCount", 0))
    factor = float(policy.get("backoffFactor", 2))
    waits = sum(int(str(policy.get("backoffDuration", "0s")).rstrip("s")) * factor ** k for k in range(retries))
    return int((retries + 1) * deadline + waits)


def longest_chain(spec: dict, platform: dict) -> int:
    """Seconds of the package's slowest chain of dependent tasks, each with all its retries (a loop's iterations
    run side by side): the least a run's deadline must allow."""
    executors = platform["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    components = spec["components"]
    dags = {"root": spec["root"]["dag"]["tasks"],
            **{name: c["dag"]["tasks"] for name, c in components.items() if "dag" in c}}
    memo: dict[tuple[str, str], int] = {}

    def cost(dag: str, name: str) -> int:
        if (dag, name) not in memo:
            task = dags[dag][name]
            ref = task["componentRef"]["name"]
            if ref in dags:
                own = max((cost(ref, n) for n in dags[ref]), default=0)
            else:
                deadline = int(executors.get(components[ref]["executorLabel"], {}).get("activeDeadlineSeconds", 0))
                own = retry_window(task.get("retryPolicy", {}), deadline)
            memo[(dag, name)] = own + max((cost(dag, d) for d in task.get("dependentTasks", [])), default=0)
        return memo[(dag, name)]

    return max(cost("root", n) for n in dags["root"])


def _spec(package: Path) -> dict:
    return next(yaml.safe_load_all(package.read_text()))


def declared(package: Path) -> dict[str, dict]:
    """The package's run parameters: name -> {parameterType, defaultValue, description}."""
    return _spec(package)["root"].get("inputDefinitions", {}).get("parameters", {})


def parse_params(pairs: list[str], types: dict[str, str] | None = None) -> dict[str, Any]:
    """`k=v` pairs -> run arguments. With `types` (name -> declared type) each value is read as its parameter's
    type: text for a string (`as_of=20261207` stays text; `source="x"` is x), a JSON number, true/false, object or
    list otherwise.
    Without, a value that parses as JSON is taken as such."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise PadError(f"--param {pair!r}: expected NAME=VALUE")
        kind = TYPES.get((types or {}).get(key, ""))
        if kind is str:  # the text as given; a JSON string literal ("...") is read as the string it spells
            quoted = value.startswith('"') and value.endswith('"') and len(value) > 1
            params[key] = json.loads(value) if quoted else value
            continue
        try:
            params[key] = json.loads(value)
        except json.JSONDecodeError:
            if kind is not None:
                raise PadError(f"--param {key}={value!r}: parameter {key!r} takes {WORDS[kind]}") from None
            params[key] = value
    return params


def check_types(types: dict[str, str], params: dict[str, Any]) -> None:
    """Each value of exactly its parameter's declared type, as the API server checks it before it starts a run
    (v2_template.go validatePipelineJobInputs: a number for NUMBER_*, a string for STRING, a bool for BOOLEAN);
    stricter for integers, which it lets a fraction through for."""
    unknown = sorted(set(params) - set(types))
    if unknown:
        raise PadError(f"unknown pipeline parameter(s) {unknown}; known: {', '.join(sorted(types))}")
    for name, value in params.items():
        kind = TYPES[types[name]]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = {str: isinstance(value, str), bool: isinstance(value, bool), dict: isinstance(value, dict),
              list: isinstance(value, list), float: number and math.isfinite(value),
              int: number and math.isfinite(value) and float(value).is_integer()}[kind]
        if not ok:
            raise PadError(f"parameter {name!r} is {value!r}; it takes {WORDS[kind]} (the KFP API server refuses a "
                           "run whose value is of another type)")


def check_run(defaults: dict[str, Any], params: dict[str, Any], *, encoders: str, store_root: str) -> None:
    """Refuse values the pipeline's `check` step, preprocess or the embedding fan-out would refuse (with the
    package's `encoders` and `store_root`, see `components.base.check_parameters`)."""
    import inspect

    from components.base import check_parameters, shard_specs
    from padcore.dataset import Protocol

    unknown = sorted(set(params) - set(defaults))
    if unknown:
        raise PadError(f"unknown pipeline parameter(s) {unknown}; known: {', '.join(sorted(defaults))}")
    values = {**defaults, **params, "encoders": encoders, "store_root": store_root}
    check_parameters(**{name: values[name] for name in inspect.signature(check_parameters).parameters})
    Protocol.from_options(**{name: values[name] for name in ("max_len", "min_len", "buckets")})
    shard_specs(values["embed_shards"])


def check_params(package: Path, params: dict[str, Any]) -> None:
    """`params` checked against the package before anything is sent: their types as the API server checks them,
    then their values as the run's `check` step will (with the constants the package gives that step)."""
    spec = _spec(package)
    parameters = declared(package)
    check_types({name: p["parameterType"] for name, p in parameters.items()}, params)
    given = spec["root"]["dag"]["tasks"]["check"]["inputs"]["parameters"]
    constant = {k: given[k]["runtimeValue"]["constant"] for k in ("encoders", "store_root")}
    check_run({name: p.get("defaultValue") for name, p in parameters.items()}, params, **constant)


def check_cron(expr: str) -> str:
    """KFP cron has 6 fields, seconds first: `0 0 3 * * 1` is 03:00 every Monday."""
    fields = expr.split()
    if len(fields) != 6:
        raise PadError(
            f"--cron {expr!r} has {len(fields)} field(s); KFP cron needs 6, seconds first "
            "(e.g. '0 0 3 * * 1' = 03:00 every Monday)"
        )
    return " ".join(fields)


@contextlib.contextmanager
def api_errors(host: str) -> Iterator[None]:
    """A KFP endpoint that cannot be reached, or answers with an error, as one line naming it."""
    import urllib3
    from kfp_server_api.exceptions import ApiException

    try:
        yield
    except ApiException as exc:
        detail = exc.body
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            body = json.loads(exc.body)
            detail = body.get("message") or body.get("error") or exc.body
        raise PadError(f"KFP at {host} refused the request: {exc.status} {exc.reason}: "
                       f"{str(detail or '').strip()[:500]}") from exc
    except (urllib3.exceptions.HTTPError, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise PadError(f"KFP at {host} cannot be reached ({reason}); is the port-forward or the endpoint up?") from exc


@dataclass
class Endpoint:
    """How to reach and authenticate to a KFP API server."""

    host: str | None = None  # else $KFP_HOST
    token: str | None = None  # bearer token; else $KFP_TOKEN; else the kube context's credentials
    namespace: str | None = None  # the user's profile namespace, on multi-user KFP only
    kube_context: str | None = None  # without a host: reach the API through this context's API-server proxy
    kfp_namespace: str = KFP_NAMESPACE  # where KFP itself runs (the proxy path), not the user's namespace

    def where(self) -> str:
        return self.host or os.environ.get(HOST_ENV) or f"kube context {self.kube_context}"

    def connect(self):
        import kfp

        host = self.host or os.environ.get(HOST_ENV)
        if not host and not self.kube_context:
            raise PadError(f"no KFP endpoint: pass --host URL or set {HOST_ENV} (or --kube-context to go through the cluster's API proxy)")
        kwargs: dict[str, Any] = {"host": host, "existing_token": self.token or os.environ.get(TOKEN_ENV) or None,
                                  "namespace": self.kfp_namespace}
        if self.kube_context:
            kwargs["kube_context"] = self.kube_context
        with warnings.catch_warnings(), api_errors(self.where()):
            warnings.filterwarnings("ignore", category=FutureWarning, module="kfp")  # pad pins KFP 2.17
            return kfp.Client(**kwargs)


def package_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def _by_name(name: str) -> str:
    return json.dumps({"predicates": [{"operation": "EQUALS", "key": "display_name", "stringValue": name}]})


def describe_parameters(package: Path) -> str:
    """The pipeline's description with a line per parameter: the KFP 2.17 UI shows a pipeline's description but
    not its parameters' (frontend/src/components/NewRunParametersV2.tsx labels each field with its name only)."""
    spec = _spec(package)
    lines = [spec["pipelineInfo"].get("description", ""), "", "Parameters:"]
    for name, p in declared(package).items():
        lines.append(f"- {name} ({p['parameterType'].lower()}, default {json.dumps(p.get('defaultValue'))}): "
                     f"{p.get('description', '')}")
    return "\n".join(lines) + f"\n\npackage {package_sha(package)}"


def upload(client, package: Path) -> tuple[str, str]:
    """Upload `package` as a version of the pipeline it names (or find it there); return (pipeline id, version id).

    Every version is named `<pipeline>-<package hash>` but the first, which the API server names after the
    pipeline itself (pipeline_upload_server.go UploadPipeline); that one is found by the hash in its description.
    """
    name = _spec(package)["pipelineInfo"]["name"]
    sha = package_sha(package)
    version_name = f"{name}-{sha}"
    pipeline_id = client.get_pipeline_id(name)
    if pipeline_id is None:
        pipeline = client.upload_pipeline(str(package), pipeline_name=name, description=describe_parameters(package))
        versions = client.list_pipeline_versions(pipeline.pipeline_id, page_size=1).pipeline_versions or []
        if not versions:
            raise PadError(f"KFP created pipeline {name!r} ({pipeline.pipeline_id}) without a version")
        return pipeline.pipeline_id, versions[0].pipeline_version_id
    for wanted in (version_name, name):
        for v in client.list_pipeline_versions(pipeline_id, filter=_by_name(wanted), page_size=100).pipeline_versions or []:
            if wanted == version_name or (v.description or "").endswith(f"package {sha}"):
                return pipeline_id, v.pipeline_version_id
    version = client.upload_pipeline_version(str(package), version_name, pipeline_id=pipeline_id,
                                             description=describe_parameters(package))
    return pipeline_id, version.pipeline_version_id


@dataclass
class Submission:
    """Where the package goes and with what; `package` None = compile from `placement`."""

    endpoint: Endpoint
    params: dict[str, Any] = field(default_factory=dict)
    pairs: list[str] = field(default_factory=list)  # NAME=VALUE from a command line, read as the package types them
    experiment: str = "pad"
    name: str = ""  # run / schedule name; "" = derived
    package: str | None = None
    placement: str | None = None
    service_account: str | None = None
    images: str | None = None  # the image record to compile with
    allow_unbuilt: bool = False

    def prepare(self, recurring: bool = False, experiment: bool = True):
        """Compile (or read), check, connect, upload, and find the experiment: (client, experiment id, pipeline
        id, version id). `recurring`: the recurring package; a given package must be one."""
        from pipelines.pad_pipeline import RECURRING_NAME

        with tempfile.TemporaryDirectory() as tmp:
            package = (Path(self.package) if self.package
                       else compile_package(Path(tmp) / "pad.yaml", self.placement, recurring=recurring,
                                            images=self.images, allow_unbuilt=self.allow_unbuilt))
            if not package.is_file():
                raise PadError(f"{package}: pipeline package not found")
            types = {name: p["parameterType"] for name, p in declared(package).items()}
            self.params = {**self.params, **parse_params(self.pairs, types)}
            check_params(package, self.params)
            if recurring and _spec(package)["pipelineInfo"]["name"] != RECURRING_NAME:
                raise PadError(f"{package}: is a one-off package; a schedule of it would not bound each run's data "
                               "by its scheduled time. Compile it with `pad pipeline compile --recurring`")
            client = self.endpoint.connect()
            with api_errors(self.endpoint.where()):
                pipeline_id, version_id = upload(client, package)
                experiment_id = (client.create_experiment(self.experiment, namespace=self.endpoint.namespace)
                                 .experiment_id if experiment else "")
        return client, experiment_id, pipeline_id, version_id


def upload_only(sub: Submission, recurring: bool = False) -> tuple[str, str]:
    """Upload the package (with its parameters described) for runs started from the UI; (pipeline, version) ids."""
    _, _, pipeline_id, version_id = sub.prepare(recurring=recurring, experiment=False)
    return pipeline_id, version_id


def submit(sub: Submission) -> str:
    """Start one run; return its id."""
    client, experiment_id, pipeline_id, version_id = sub.prepare()
    with api_errors(sub.endpoint.where()):
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

    It runs the recurring package: each run's data bounded by its scheduled time.
    """
    cron = check_cron(cron)
    client, experiment_id, pipeline_id, version_id = sub.prepare(recurring=True)
    with api_errors(sub.endpoint.where()):
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
