"""`pad serve`: the KServe model server around `padcore.predictor.Predictor` (needs the [serve] extra).

KServe's V1 protocol: `POST /v1/models/pad:predict` with
`{"instances": [{"items": ["B0001", ...], "k": 10}]}` is answered with
`{"predictions": [{"items": [...], "scores": [...], "unknown": [...], "version": "..."}]}`.
"""

from __future__ import annotations

import logging
from typing import Any

from padcore.errors import PadError
from padcore.predictor import Predictor, log

INSTALL = ("pad serve needs the [serve] extra, which cannot share an environment with pandas 3: "
           "python3 -m venv .venv-serve && .venv-serve/bin/pip install torch==2.13.0 -e '.[serve]', "
           "then .venv-serve/bin/pad serve ... (or the serve image of docker/)")


def serve(store: str, port: int = 8080, *, host: str = "0.0.0.0", name: str = "pad", poll: float = 30.0,
          device: str = "cpu") -> None:
    """Load the champion of `store` (refusing a broken one), follow its pointer every `poll` seconds, serve."""
    try:
        import kserve
        from kserve.errors import InvalidInput
    except ImportError as exc:
        raise PadError(INSTALL) from exc

    class ChampionModel(kserve.Model):
        """The store's champion as a KServe model."""

        def __init__(self) -> None:
            super().__init__(name)
            self.predictor = Predictor(store, device)

        def load(self) -> bool:
            self.predictor.load()
            self.ready = True
            return self.ready

        async def predict(self, payload: Any, headers: dict | None = None, response_headers: dict | None = None) -> dict:
            if not isinstance(payload, dict) or "instances" not in payload:
                raise InvalidInput('expected a JSON object {"instances": [{"items": [...], "k": 10}]}')
            try:
                return {"predictions": self.predictor.predict(payload["instances"])}
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
    Server(http_port=port, enable_grpc=False, workers=1).start([model])
