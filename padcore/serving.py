"""`pad serve`: the KServe model server around `padcore.predictor.Predictor` (needs the [serve] extra).

KServe's V1 protocol: `POST /v1/models/pad:predict` with
`{"instances": [{"items": ["B0001", ...], "k": 10}]}` is answered with
`{"predictions": [{"items": [...], "scores": [...], "unknown": [...], "fallback": null, "version": "..."}]}`.
Concurrent requests are scored together (`padcore.predictor.Batcher`).
"""

from __future__ import annotations

import gc
import logging
from typing import Any

from padcore.errors import PadError

BATCH_WINDOW = 0.0  # seconds a batch waits for more requests once it has one: a lone request is never held back
MAX_BATCH = 256  # histories scored in one call at most

INSTALL = ("pad serve needs the [serve] extra, which cannot share an environment with pandas 3: "
           "python3 -m venv .venv-serve && .venv-serve/bin/pip install torch==2.13.0 -e '.[serve]', "
           "then .venv-serve/bin/pad serve ... (or the serve image of docker/)")


def serve(store: str, port: int = 8080, *, host: str = "0.0.0.0", name: str = "pad", poll: float = 30.0,
          device: str = "cpu", batch_window: float = BATCH_WINDOW, max_batch: int = MAX_BATCH,
          log_requests: bool = False) -> None:
    """Load the champion of `store` (refusing a broken one), follow its pointer every `poll` seconds, serve;
    concurrent requests are scored in batches of up to `max_batch` histories (`Batcher`)."""
    try:
        import kserve
        from kserve.errors import InvalidInput
    except ImportError as exc:
        raise PadError(INSTALL) from exc
    from padcore.predictor import Batcher, Predictor, log

    class ChampionModel(kserve.Model):
        """The store's champion as a KServe model."""

        def __init__(self) -> None:
            super().__init__(name)
            self.predictor = Predictor(store, device)
            self.batcher = Batcher(self.predictor, batch_window, max_batch)

        def load(self) -> bool:
            self.predictor.load()
            self.ready = True
            return self.ready

        async def predict(self, payload: Any, headers: dict | None = None, response_headers: dict | None = None) -> dict:
            if not isinstance(payload, dict) or "instances" not in payload:
                raise InvalidInput('expected a JSON object {"instances": [{"items": [...], "k": 10}]}')
            try:
                return {"predictions": await self.batcher.predict(payload["instances"])}
            except PadError as exc:
                raise InvalidInput(str(exc)) from exc

    class Server(kserve.ModelServer):
        def setup_event_loop(self) -> None:
            # kserve 0.21 binds its REST server to 0.0.0.0; its config is read only when serving starts
            if self._rest_server is not None:
                self._rest_server.config.host = host
            super().setup_event_loop()

    handler = logging.StreamHandler()  # kserve configures only its own loggers
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    model = ChampionModel()
    model.load()
    model.predictor.watch(poll)
    server = Server(http_port=port, enable_grpc=False, workers=1, enable_latency_logging=log_requests)
    if not log_requests:
        quiet_requests()
    gc.freeze()  # what is loaded by now stays: the collector's passes skip it
    gc.set_threshold(50_000, 20, 20)  # a request allocates thousands of objects: collect young ones less often
    server.start([model])


def quiet_requests() -> None:
    """No per-request logging: kserve 0.21 writes three lines a request (its timing middleware, which also calls
    getrusage twice, and its latency line) and uvicorn one; profiled at 900 requests/s on a small model, they took
    more of the server's CPU than the scoring."""
    from kserve.protocol.rest import server as rest

    for name in ("kserve.trace", "uvicorn.access"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # RESTServer._add_middlewares adds the timing middleware, and an access logger only for an access_log_format,
    # which pad serve never sets
    rest.RESTServer._add_middlewares = lambda self, app: None
