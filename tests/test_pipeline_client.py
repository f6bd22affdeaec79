"""`pad pipeline submit` and `schedule` against a local HTTP server that records what kfp.Client sends."""

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


class FakeKFP(BaseHTTPRequestHandler):
    """The slice of the KFP v2beta1 REST API that upload, run and recurring-run creation use."""

    def log_message(self, *args):  # keep pytest output clean
        pass

    def _reply(self, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

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
            versions = [v for v in reversed(state["versions"]) if v["pipeline_id"] == pid]
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
            state["packages"].append(self._uploaded_file(body))
            if path.endswith("/upload"):
                pipeline = {"pipeline_id": f"p{len(state['pipelines']) + 1}", "display_name": query["name"]}
                state["pipelines"].append(pipeline)
                pid, name = pipeline["pipeline_id"], query["name"]
            else:
                pid, name = query["pipelineid"], query["name"]
            version = {"pipeline_id": pid, "pipeline_version_id": f"v{len(state['versions']) + 1}", "display_name": name}
            state["versions"].append(version)
            return self._reply(pipeline if path.endswith("/upload") else version)
        doc = json.loads(body)
        if path == f"{API}/experiments":
            experiment = {"experiment_id": f"e{len(state['experiments']) + 1}", "display_name": doc["display_name"]}
            state["experiments"].append(experiment)
            return self._reply(experiment)
        if path == f"{API}/runs":
            return self._reply({"run_id": "run-1", "display_name": doc["display_name"]})
        if path == f"{API}/recurringruns":
            return self._reply({"recurring_run_id": "rr-1", "display_name": doc["display_name"]})
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


def test_submit_uploads_the_package_and_starts_a_run(kfp_server, capsys):
    rc = main(["pipeline", "submit", "--host", kfp_server.url, "--experiment", "nightly", "--name", "pp run",
               "--param", "source=prime_pantry", "--param", "epochs=3", "--param", 'train_options={"dim": 32}',
               "--service-account", "pad-runner"])
    assert rc == 0 and "run run-1 started" in capsys.readouterr().out
    # the package went up whole: IR first, kfp-kubernetes placement second
    (upload,) = calls(kfp_server, "POST", "/pipelines/upload")
    assert upload["query"]["name"] == "pad"
    docs = list(yaml.safe_load_all(kfp_server.state["packages"][0]))
    assert docs[0]["pipelineInfo"]["name"] == "pad"
    assert "exec-pretrain" in docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    (experiment,) = calls(kfp_server, "POST", "/experiments")
    assert json.loads(experiment["body"])["display_name"] == "nightly"
    (run,) = calls(kfp_server, "POST", "/runs")
    body = json.loads(run["body"])
    assert body["display_name"] == "pp run" and body["experiment_id"] == "e1"
    assert body["pipeline_version_reference"] == {"pipeline_id": "p1", "pipeline_version_id": "v1"}
    assert body["runtime_config"]["parameters"] == {"source": "prime_pantry", "epochs": 3, "train_options": {"dim": 32}}
    assert body["service_account"] == "pad-runner"
    assert not calls(kfp_server, "POST", "/recurringruns")


def test_same_package_is_uploaded_once_per_version(kfp_server):
    sub = Submission(Endpoint(host=kfp_server.url), {"source": "prime_pantry"})
    for _ in range(3):
        submit(sub)
    # first: new pipeline; second: a version named by the package hash; third: that version reused
    assert len(calls(kfp_server, "POST", "/pipelines/upload")) == 1
    (version,) = calls(kfp_server, "POST", "/pipelines/upload_version")
    assert version["query"]["name"].startswith("pad-") and version["query"]["pipelineid"] == "p1"
    runs = [json.loads(c["body"])["pipeline_version_reference"]["pipeline_version_id"]
            for c in calls(kfp_server, "POST", "/runs")]
    assert runs == ["v1", "v2", "v2"]
    assert len(calls(kfp_server, "POST", "/experiments")) == 1, "the experiment is created once, then found"


def test_schedule_creates_a_recurring_run(kfp_server, monkeypatch, capsys):
    monkeypatch.setenv("KFP_HOST", kfp_server.url)
    monkeypatch.setenv("KFP_TOKEN", "secret-token")
    rc = main(["pipeline", "schedule", "--cron", "0 0 3 * * 1", "--param", "source=prime_pantry",
               "--param", "gamma=0.5"])
    assert rc == 0 and "recurring run rr-1 created" in capsys.readouterr().out
    (recurring,) = calls(kfp_server, "POST", "/recurringruns")
    body = json.loads(recurring["body"])
    assert body["trigger"]["cron_schedule"]["cron"] == "0 0 3 * * 1"
    assert int(body["max_concurrency"]) == 1 and body["no_catchup"] is True and body["mode"] == "ENABLE"
    assert body["runtime_config"]["parameters"] == {"source": "prime_pantry", "gamma": 0.5}
    assert body["pipeline_version_reference"]["pipeline_id"] == "p1"
    assert recurring["headers"]["authorization"] == "Bearer secret-token"
    assert not calls(kfp_server, "POST", "/runs")


@pytest.mark.parametrize("cron", ["0 3 * * 1", "0 0 3 * * 1 2020", ""])
def test_bad_cron_is_refused_before_anything_is_sent(kfp_server, cron):
    with pytest.raises(PadError, match="KFP cron needs 6"):
        schedule(Submission(Endpoint(host=kfp_server.url), {}), cron)
    assert kfp_server.calls == []


def test_unknown_parameter_is_refused_before_anything_is_sent(kfp_server):
    with pytest.raises(PadError, match=r"unknown pipeline parameter\(s\) \['epoch'\]"):
        submit(Submission(Endpoint(host=kfp_server.url), {"epoch": 3}))
    assert kfp_server.calls == []


def test_no_host_is_a_clear_error(monkeypatch, capsys):
    monkeypatch.delenv("KFP_HOST", raising=False)
    assert main(["pipeline", "submit"]) == 2
    assert "--host URL or set KFP_HOST" in capsys.readouterr().err


def test_parse_params_and_cron():
    assert parse_params(["a=1", "b=x", "c=0.5", "d=true", 'e={"k": 2}', "f=a=b"]) == {
        "a": 1, "b": "x", "c": 0.5, "d": True, "e": {"k": 2}, "f": "a=b"}
    with pytest.raises(PadError, match="NAME=VALUE"):
        parse_params(["novalue"])
    assert check_cron(" 0  0 3 * * 1 ") == "0 0 3 * * 1"


def test_schedule_sends_a_package_that_caches_nothing(kfp_server, tmp_path):
    """A recurring run must retrain on new data: no step of what schedule uploads may be answered from the cache."""
    from pipelines.client import cached_tasks

    schedule(Submission(Endpoint(host=kfp_server.url), {"source": "files:gs://shop/log", "store": "gs://shop/models"}),
             "0 0 3 * * 1")
    (package,) = kfp_server.state["packages"]
    sent = tmp_path / "sent.yaml"
    sent.write_text(package)
    assert cached_tasks(sent) == []
    spec = next(yaml.safe_load_all(package))
    prep = spec["root"]["dag"]["tasks"]["preprocess"]["inputs"]["parameters"]
    assert prep["scheduled_time"]["runtimeValue"]["constant"] == "{{$.pipeline_job_schedule_time_utc}}"
    (recurring,) = calls(kfp_server, "POST", "/recurringruns")
    assert json.loads(recurring["body"])["runtime_config"]["parameters"] == {
        "source": "files:gs://shop/log", "store": "gs://shop/models"}
    # a one-off run of the same pipeline caches as configured: another package, another version
    submit(Submission(Endpoint(host=kfp_server.url), {}))
    assert len(kfp_server.state["packages"]) == 2
    once = tmp_path / "once.yaml"
    once.write_text(kfp_server.state["packages"][1])
    assert cached_tasks(once)


def test_schedule_refuses_a_package_that_caches(kfp_server, tmp_path):
    from pipelines.client import compile_package

    package = compile_package(tmp_path / "pad.yaml")
    with pytest.raises(PadError, match="a recurring run would be answered from the cache"):
        schedule(Submission(Endpoint(host=kfp_server.url), {}, package=str(package)), "0 0 3 * * 1")
    assert kfp_server.calls == []
    recurring = compile_package(tmp_path / "recurring.yaml", recurring=True)
    schedule(Submission(Endpoint(host=kfp_server.url), {}, package=str(recurring)), "0 0 3 * * 1")
    assert len(calls(kfp_server, "POST", "/recurringruns")) == 1
