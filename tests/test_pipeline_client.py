"""`pad pipeline upload`, `submit` and `schedule` against a loopback stand-in for the KFP v2beta1 API.

The stand-in records what kfp.Client sends and applies the KFP 2.17 API server's
own rules to it, so a test passes only if the backend would accept the request:
- a run's parameters are of exactly their declared types, none unknown
  (backend/src/apiserver/template/v2_template.go validatePipelineJobInputs);
- a recurring run's max_concurrency is 1 to 10 (server/api_converter.go toModelJob);
- uploading a new pipeline makes its first version, named after the pipeline, with
  the upload's description (server/pipeline_upload_server.go UploadPipeline).
"""

import email.parser
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

import pytest
import yaml

from pad.cli import main
from padcore.errors import PadError
from pipelines.client import Endpoint, Submission, check_cron, parse_params, schedule, submit

API = "/apis/v2beta1"
# validatePipelineJobInputs: the JSON kind a value of each declared type must have
KINDS = {"NUMBER_INTEGER": (int, float), "NUMBER_DOUBLE": (int, float), "STRING": (str,), "BOOLEAN": (bool,),
         "STRUCT": (dict,), "LIST": (list,)}


def backend_refuses(package: str, parameters: dict) -> str | None:
    """What the API server says of a run of `package` with `parameters` (None: accepted)."""
    declared = next(yaml.safe_load_all(package))["root"]["inputDefinitions"]["parameters"]
    extra = sorted(set(parameters) - set(declared))
    if extra:
        return f"parameter(s) provided are not required by pipeline: {extra}"
    for name, value in parameters.items():
        kind = declared[name]["parameterType"]
        if not isinstance(value, KINDS[kind]) or (kind.startswith("NUMBER") and isinstance(value, bool)):
            return f"input parameter {name} requires type {kind}, but the parameter value is not of that type"
    return None


class FakeKFP(BaseHTTPRequestHandler):
    """The slice of the KFP v2beta1 REST API that upload, run and recurring-run creation use."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, body: dict, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _refuse(self, message: str) -> None:
        self._reply({"error": message, "code": 3, "message": message}, status=400)

    def _record(self, body: bytes) -> tuple[str, dict]:
        url = urlparse(self.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.calls.append({"method": self.command, "path": url.path, "query": query, "body": body,
                                  "headers": {k.lower(): v for k, v in self.headers.items()}})
        return url.path, query

    @staticmethod
    def _name_filter(query: dict) -> str | None:
        if "filter" not in query:
            return None
        return json.loads(query["filter"])["predicates"][0]["stringValue"]

    def do_GET(self):
        path, query = self._record(b"")
        state = self.server.state
        if path == f"{API}/healthz":
            return self._reply({"multi_user": False})
        if path == f"{API}/pipelines":
            found = [p for p in state["pipelines"] if p["display_name"] == self._name_filter(query)]
            return self._reply({"pipelines": found, "total_size": len(found)} if found else {"total_size": 0})
        if path.startswith(f"{API}/pipelines/") and path.endswith("/versions"):
            pid = path.split("/")[-2]
            versions = [{k: v for k, v in v.items() if k != "package"} for v in reversed(state["versions"])
                        if v["pipeline_id"] == pid]
            name = self._name_filter(query)
            versions = [v for v in versions if name is None or v["display_name"] == name]
            return self._reply({"pipeline_versions": versions[: int(query.get("page_size", 10))]})
        if path == f"{API}/experiments":
            found = [e for e in state["experiments"] if e["display_name"] == self._name_filter(query)]
            return self._reply({"experiments": found, "total_size": len(found)} if found else {"total_size": 0})
        self.send_error(404)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        path, query = self._record(body)
        state = self.server.state
        if path in (f"{API}/pipelines/upload", f"{API}/pipelines/upload_version"):
            package = self._uploaded_file(body)
            state["packages"].append(package)
            if path.endswith("/upload"):
                pipeline = {"pipeline_id": f"p{len(state['pipelines']) + 1}", "display_name": query["name"],
                            "description": query.get("description", "")}
                state["pipelines"].append(pipeline)
                pid, name = pipeline["pipeline_id"], query["name"]
            else:
                pid, name = query["pipelineid"], query["name"]
            version = {"pipeline_id": pid, "pipeline_version_id": f"v{len(state['versions']) + 1}",
                       "display_name": name, "description": query.get("description", ""), "package": package}
            state["versions"].append(version)
            shown = {k: v for k, v in version.items() if k != "package"}
            return self._reply(pipeline if path.endswith("/upload") else shown)
        doc = json.loads(body)
        if path == f"{API}/experiments":
            experiment = {"experiment_id": f"e{len(state['experiments']) + 1}", "display_name": doc["display_name"]}
            state["experiments"].append(experiment)
            return self._reply(experiment)
        if path in (f"{API}/runs", f"{API}/recurringruns"):
            ref = doc["pipeline_version_reference"]["pipeline_version_id"]
            (version,) = [v for v in state["versions"] if v["pipeline_version_id"] == ref]
            refused = backend_refuses(version["package"], doc.get("runtime_config", {}).get("parameters", {}))
            if path.endswith("recurringruns") and not 1 <= int(doc.get("max_concurrency") or 0) <= 10:
                refused = f"Max concurrency of a recurring run must be at least 1 and at most 10. Received {doc.get('max_concurrency')}"
            if refused:
                return self._refuse(refused)
            key = "run_id" if path.endswith("/runs") else "recurring_run_id"
            return self._reply({key: "run-1" if key == "run_id" else "rr-1", "display_name": doc["display_name"]})
        self.send_error(404)

    def _uploaded_file(self, body: bytes) -> str:
        message = email.parser.BytesParser().parsebytes(
            b"Content-Type: " + self.headers["Content-Type"].encode() + b"\r\n\r\n" + body
        )
        (part,) = [p for p in message.get_payload() if p.get_param("name", header="content-disposition") == "uploadfile"]
        return part.get_payload(decode=True).decode()


@pytest.fixture
def kfp_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), FakeKFP)
    server.calls = []
    server.state = {"pipelines": [], "versions": [], "experiments": [], "packages": []}
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()


def calls(server, method, path):
    return [c for c in server.calls if c["method"] == method and c["path"] == f"{API}{path}"]


@pytest.fixture(autouse=True)
def built_images(tmp_path, monkeypatch):
    """An image record as `docker/build.py --registry reg.example` writes it: every target pushed."""
    from pipelines.images import Built, write_record
    from pipelines.placement import TARGETS

    record = tmp_path / "pad-images.json"
    write_record(record, {t: Built(ref=f"reg.example/pad-{t}:0.1.0-abc1234", image_id=f"sha256:{t}", delivered="pushed",
                                   built_at="2026-12-07T00:00:00+00:00") for t in TARGETS})
    monkeypatch.setenv("PAD_IMAGES", str(record))
    return record


def test_submit_uploads_the_package_and_starts_a_run(kfp_server, capsys):
    rc = main(["pipeline", "submit", "--host", kfp_server.url, "--experiment", "nightly", "--name", "pp run",
               "--param", "source=prime_pantry", "--param", "epochs=3", "--param", 'train_options={"dim": 32}',
               "--service-account", "pad-runner"])
    assert rc == 0 and "run run-1 started" in capsys.readouterr().out
    # the package went up whole: IR first, kfp-kubernetes placement second, with the recorded images
    (upload,) = calls(kfp_server, "POST", "/pipelines/upload")
    assert upload["query"]["name"] == "pad"
    assert "- source (string, default \"prime_pantry\"): data source" in upload["query"]["description"]
    docs = list(yaml.safe_load_all(kfp_server.state["packages"][0]))
    assert docs[0]["pipelineInfo"]["name"] == "pad"
    assert "exec-pretrain" in docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in docs[0]["deploymentSpec"]["executors"].values()}
    assert images == {"reg.example/pad-cpu:0.1.0-abc1234", "reg.example/pad-gpu:0.1.0-abc1234",
                      "reg.example/pad-llm2vec:0.1.0-abc1234"}
    (experiment,) = calls(kfp_server, "POST", "/experiments")
    assert json.loads(experiment["body"])["display_name"] == "nightly"
    (run,) = calls(kfp_server, "POST", "/runs")
    body = json.loads(run["body"])
    assert body["display_name"] == "pp run" and body["experiment_id"] == "e1"
    assert body["pipeline_version_reference"] == {"pipeline_id": "p1", "pipeline_version_id": "v1"}
    assert body["runtime_config"]["parameters"] == {"source": "prime_pantry", "epochs": 3, "train_options": {"dim": 32}}
    assert body["service_account"] == "pad-runner"
    assert not calls(kfp_server, "POST", "/recurringruns")


def test_same_package_is_uploaded_once(kfp_server):
    """The first version (named after the pipeline by the API server) is found again by its package hash."""
    sub = Submission(Endpoint(host=kfp_server.url), {"source": "prime_pantry"})
    for _ in range(3):
        submit(sub)
    assert len(calls(kfp_server, "POST", "/pipelines/upload")) == 1
    assert not calls(kfp_server, "POST", "/pipelines/upload_version"), "an identical package is never sent twice"
    runs = [json.loads(c["body"])["pipeline_version_reference"]["pipeline_version_id"]
            for c in calls(kfp_server, "POST", "/runs")]
    assert runs == ["v1", "v1", "v1"]
    assert len(calls(kfp_server, "POST", "/experiments")) == 1, "the experiment is created once, then found"


def test_a_changed_package_is_a_new_version_named_by_its_hash(kfp_server, tmp_path):
    from pipelines.client import compile_package, package_sha

    submit(Submission(Endpoint(host=kfp_server.url), {}))
    other = tmp_path / "other.yaml"
    compile_package(other, "minikube", images=None)
    for _ in range(2):
        submit(Submission(Endpoint(host=kfp_server.url), {}, package=str(other)))
    (version,) = calls(kfp_server, "POST", "/pipelines/upload_version")
    assert version["query"]["name"] == f"pad-{package_sha(other)}" and version["query"]["pipelineid"] == "p1"


def test_schedule_creates_a_recurring_run_of_its_own_pipeline(kfp_server, monkeypatch, capsys):
    monkeypatch.setenv("KFP_HOST", kfp_server.url)
    monkeypatch.setenv("KFP_TOKEN", "secret-token")
    rc = main(["pipeline", "schedule", "--cron", "0 0 3 * * 1", "--param", "source=prime_pantry",
               "--param", "gamma=0.5"])
    assert rc == 0 and "recurring run rr-1 created" in capsys.readouterr().out
    (upload,) = calls(kfp_server, "POST", "/pipelines/upload")
    assert upload["query"]["name"] == "pad-recurring", "not a look-alike version of the one-off pipeline"
    (recurring,) = calls(kfp_server, "POST", "/recurringruns")
    body = json.loads(recurring["body"])
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert int(body["max_concurrency"]) == 1 and body["no_catchup"] is True and body["mode"] == "ENABLE"
    assert body["runtime_config"]["parameters"] == {"source": "prime_pantry", "gamma": 0.5}
    assert body["pipeline_version_reference"]["pipeline_id"] == "p1"
    assert recurring["headers"]["authorization"] == "Bearer secret-token"
    assert not calls(kfp_server, "POST", "/runs")


def test_upload_verb_sends_the_package_with_its_parameters_described(kfp_server, capsys):
    assert main(["pipeline", "upload", "--host", kfp_server.url, "--recurring"]) == 0
    assert "pipeline p1, version v1" in capsys.readouterr().out
    (upload,) = calls(kfp_server, "POST", "/pipelines/upload")
    described = upload["query"]["description"]
    assert upload["query"]["name"] == "pad-recurring" and "Parameters:" in described
    for name in ("source", "encoder", "store", "top_k", "as_of"):
        assert f"- {name} (" in described
    assert not calls(kfp_server, "POST", "/runs") and not calls(kfp_server, "POST", "/experiments")


@pytest.mark.parametrize("cron", ["0 3 * * 1", "0 0 3 * * 1 2020", ""])
def test_bad_cron_is_refused_before_anything_is_sent(kfp_server, cron):
    with pytest.raises(PadError, match="KFP cron needs 6"):
        schedule(Submission(Endpoint(host=kfp_server.url), {}), cron)
    assert kfp_server.calls == []


def test_unknown_parameter_is_refused_before_anything_is_sent(kfp_server):
    with pytest.raises(PadError, match=r"unknown pipeline parameter\(s\) \['epoch'\]"):
        submit(Submission(Endpoint(host=kfp_server.url), {"epoch": 3}))
    assert kfp_server.calls == []


@pytest.mark.parametrize("pair, sent", [
    ("as_of=20261207", "20261207"),  # a string parameter: the text as given, not the number
    ("source=123", "123"),
    ("top_k=20", 20),
    ("force=true", True),
    ("min_gain=0.02", 0.02),
    ("baselines=[\"hybrid\"]", ["hybrid"]),
])
def test_each_parameter_is_sent_as_its_declared_type(kfp_server, pair, sent):
    """What the API server accepts (validatePipelineJobInputs); the stand-in refuses any other type."""
    submit(Submission(Endpoint(host=kfp_server.url), pairs=[pair]))
    (run,) = calls(kfp_server, "POST", "/runs")
    assert json.loads(run["body"])["runtime_config"]["parameters"] == {pair.split("=")[0]: sent}


@pytest.mark.parametrize("pair, says", [
    ("force=yes", "--param force='yes': parameter 'force' takes true or false"),
    ("top_k=ten", "--param top_k='ten': parameter 'top_k' takes a whole number"),
    ("top_k=2.5", "parameter 'top_k' is 2.5; it takes a whole number"),
    ("top_k=0", "parameter 'top_k' is 0; expected a whole number, 1 or more"),
    ("epochs=\"3\"", "parameter 'epochs' is '3'; it takes a whole number"),
    ("train_options=[1]", "parameter 'train_options' is [1]; it takes a JSON object"),
    ("store=/mnt/pad/store", "compare and publish run in pods of their own"),
])
def test_a_value_the_backend_or_a_step_would_refuse_is_refused_before_anything_is_sent(kfp_server, capsys, pair, says):
    assert main(["pipeline", "submit", "--host", kfp_server.url, "--param", pair]) == 2
    err = capsys.readouterr().err
    assert says in err and err.count("\n") == 1, err
    assert kfp_server.calls == []


def test_python_values_of_another_type_are_refused_as_the_api_server_would(kfp_server):
    with pytest.raises(PadError, match="parameter 'as_of' is 20261207; it takes a string"):
        submit(Submission(Endpoint(host=kfp_server.url), {"as_of": 20261207}))
    assert kfp_server.calls == []


def test_a_refusing_host_is_one_line_and_exit_2(kfp_server, capsys, monkeypatch):
    """A request the stand-in refuses as the API server would (a package whose runs it does not take)."""
    import pipelines.client

    monkeypatch.setattr(pipelines.client, "check_params", lambda package, params: None)  # as if a newer server
    assert main(["pipeline", "submit", "--host", kfp_server.url, "--param", "epochs=\"3\""]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pad pipeline: error: KFP at {kfp_server.url} refused the request: 400")
    assert "input parameter epochs requires type NUMBER_INTEGER" in err and err.count("\n") == 1


def test_an_unreachable_host_is_one_line_and_exit_2(capsys):
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    assert main(["pipeline", "submit", "--host", f"http://127.0.0.1:{port}"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"pad pipeline: error: KFP at http://127.0.0.1:{port} cannot be reached")
    assert err.count("\n") == 1 and "Traceback" not in err


def test_no_host_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.delenv("KFP_HOST", raising=False)
    assert main(["pipeline", "submit"]) == 2
    assert "--host URL or set KFP_HOST" in capsys.readouterr().err


def test_parse_params_and_cron():
    assert parse_params(["a=1", "b=x", "c=0.5", "d=true", 'e={"k": 2}', "f=a=b"]) == {
        "a": 1, "b": "x", "c": 0.5, "d": True, "e": {"k": 2}, "f": "a=b"}
    assert parse_params(["a=1", "b=2"], {"a": "STRING", "b": "NUMBER_INTEGER"}) == {"a": "1", "b": 2}
    assert parse_params(['a="files:/x"', 'b="'], {"a": "STRING", "b": "STRING"}) == {"a": "files:/x", "b": '"'}
    with pytest.raises(PadError, match="NAME=VALUE"):
        parse_params(["novalue"])
    assert check_cron(" 0  0 3 * * 1 ") == "0 0 3 * * 1"


def test_schedule_sends_the_recurring_package(kfp_server, tmp_path):
    """Each scheduled run bounds its data by its scheduled time; the fingerprint keeps every package fresh."""
    schedule(Submission(Endpoint(host=kfp_server.url), {"source": "files:gs://shop/log", "store": "gs://shop/models"}),
             "0 0 3 * * 1")
    (package,) = kfp_server.state["packages"]
    spec = next(yaml.safe_load_all(package))
    assert spec["pipelineInfo"]["name"] == "pad-recurring"
    fp = spec["root"]["dag"]["tasks"]["fingerprint"]["inputs"]["parameters"]
    assert fp["scheduled_time"]["runtimeValue"]["constant"] == "{{$.pipeline_job_schedule_time_utc}}"
    (recurring,) = calls(kfp_server, "POST", "/recurringruns")
    assert json.loads(recurring["body"])["runtime_config"]["parameters"] == {
        "source": "files:gs://shop/log", "store": "gs://shop/models"}


def test_schedule_refuses_a_one_off_package(kfp_server, tmp_path):
    from pipelines.client import compile_package

    package = compile_package(tmp_path / "pad.yaml")
    with pytest.raises(PadError, match="is a one-off package; a schedule of it would not bound"):
        schedule(Submission(Endpoint(host=kfp_server.url), {}, package=str(package)), "0 0 3 * * 1")
    assert kfp_server.calls == []
    recurring = compile_package(tmp_path / "recurring.yaml", recurring=True)
    schedule(Submission(Endpoint(host=kfp_server.url), {}, package=str(recurring)), "0 0 3 * * 1")
    assert len(calls(kfp_server, "POST", "/recurringruns")) == 1


def test_the_user_namespace_does_not_move_the_api_proxy(kfp_server, monkeypatch):
    """--namespace is the user's profile namespace (experiments go there); KFP's own stays `kubeflow`."""
    import kfp

    seen = {}
    real = kfp.Client.__init__

    def spy(self, *args, **kwargs):
        seen.update(kwargs)
        real(self, *args, **kwargs)

    monkeypatch.setattr(kfp.Client, "__init__", spy)
    submit(Submission(Endpoint(host=kfp_server.url, namespace="team-a"), {}))
    assert seen["namespace"] == "kubeflow"
    (experiment,) = calls(kfp_server, "POST", "/experiments")
    assert json.loads(experiment["body"])["namespace"] == "team-a"


def test_compile_refuses_images_no_build_recorded_or_no_cluster_can_pull(tmp_path, monkeypatch, capsys):
    from pipelines.images import Built, write_record

    monkeypatch.setenv("PAD_IMAGES", str(tmp_path / "none.json"))
    assert main(["pipeline", "compile", "--out", str(tmp_path / "p.yaml")]) == 2
    err = capsys.readouterr().err
    assert "no docker/build.py run recorded" in err and "python docker/build.py --registry" in err
    assert not (tmp_path / "p.yaml").exists()
    local = tmp_path / "local.json"
    write_record(local, {t: Built(f"pad.local/pad-{t}:1", "sha256:x", "local", "now") for t in ("cpu", "gpu", "llm2vec")})
    assert main(["pipeline", "compile", "--images", str(local), "--out", str(tmp_path / "p.yaml")]) == 2
    assert "was built with --no-push (only this machine's engine holds it), where a gke cluster cannot pull it" in \
        capsys.readouterr().err
    kind = tmp_path / "kind.json"
    write_record(kind, {"cpu": Built("pad.local/pad-cpu:1", "sha256:x", "kind:pad", "now")})
    assert main(["pipeline", "compile", "--config", "kind", "--images", str(kind), "--out", str(tmp_path / "k.yaml")]) == 0
    assert main(["pipeline", "compile", "--config", "minikube", "--images", str(kind), "--out", str(tmp_path / "m.yaml")]) == 2
