"""Triton's own HTTP client calls Vigil unchanged (issue 7): binary tensors by default, then JSON."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tests.live import LiveServer
from training.data import load_mnist

pytestmark = pytest.mark.slow


def test_tritonclient_http_infers_unchanged(
    web_server: LiveServer, data_dir: Path
) -> None:
    # Imported here: tritonclient brings gevent, which only this test needs.
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    test = load_mnist(data_dir, train=False)
    x, y = test.x[:4].numpy().astype(np.float32), test.y[:4].numpy()
    client = httpclient.InferenceServerClient(
        url=web_server.base.removeprefix("http://")
    )
    try:
        assert client.is_server_live() and client.is_server_ready()
        assert client.is_model_ready("mnist-default")
        meta = client.get_model_metadata("mnist-default")
        assert meta["inputs"][0]["shape"] == [-1, 1, 28, 28]
        for binary in (True, False):
            inp = httpclient.InferInput("input", list(x.shape), "FP32")
            inp.set_data_from_numpy(x, binary_data=binary)
            # No outputs named: the client asks for every output in binary form.
            result = client.infer("mnist-default", [inp], request_id="triton-1")
            assert result.as_numpy("predicted_label").tolist() == y.tolist()
            assert result.as_numpy("probabilities").shape == (4, 10)
            assert [d.decode() for d in result.as_numpy("decision")] == ["accept"] * 4
            assert result.as_numpy("prediction_set").dtype == np.bool_
            assert result.get_response()["id"] == "triton-1"
        json_out = [httpclient.InferRequestedOutput("ood_score", binary_data=False)]
        result = client.infer("mnist-default", [inp], outputs=json_out)
        assert result.as_numpy("ood_score").shape == (4,)
        bad = httpclient.InferInput("input", [1, 3, 28, 28], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3, 28, 28), np.float32))
        with pytest.raises(InferenceServerException) as caught:
            client.infer("mnist-default", [bad])
        assert caught.value.status() == "422" and "does not match" in str(caught.value)
    finally:
        client.close()
