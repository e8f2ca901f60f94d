"""Drives trainserve's Open Inference Protocol routes with the protocol's standard Python
client, tritonclient[http], unchanged: server liveness and readiness, model metadata and
readiness, and inference with binary tensors (the client's default) and with JSON tensors.

Called by tests/api/v2.rs:
    python tritonclient_check.py URL MODEL EXPECTED.json [TOKEN]
where EXPECTED.json holds {"rows": [[...], ...], "probabilities": [[...], ...], "labels": [...]}
as /v1 answered them. Prints one line of JSON; exits non-zero on the first mismatch.
"""

import json
import sys

import numpy as np
import tritonclient.http as httpclient


def main():
    url, model, expected_path = sys.argv[1:4]
    token = sys.argv[4] if len(sys.argv) > 4 else None

    def headers():
        # A fresh dict per call: infer() adds Inference-Header-Content-Length to the dict it
        # is given, which a later JSON-only request must not carry.
        return {"Authorization": f"Bearer {token}"} if token else None

    expected = json.load(open(expected_path))
    client = httpclient.InferenceServerClient(url=url.removeprefix("http://"))
    assert client.is_server_live(headers=headers()), "server not live"
    assert client.is_server_ready(headers=headers()), "server not ready"
    server = client.get_server_metadata(headers=headers())
    assert server["name"] == "trainserve", server
    metadata = client.get_model_metadata(model, headers=headers())
    assert metadata["name"] == model, metadata
    assert metadata["inputs"][0]["name"] == "input", metadata
    assert [o["name"] for o in metadata["outputs"]] == ["probabilities", "logits", "label"], metadata
    assert client.is_model_ready(model, headers=headers()), "model not ready"

    rows = np.array(expected["rows"], dtype=np.float32)
    want = np.array(expected["probabilities"], dtype=np.float32)
    checked = []
    for binary in (True, False):
        tensor = httpclient.InferInput("input", list(rows.shape), "FP32")
        tensor.set_data_from_numpy(rows, binary_data=binary)
        outputs = [
            httpclient.InferRequestedOutput("probabilities", binary_data=binary),
            httpclient.InferRequestedOutput("label", binary_data=binary),
        ]
        result = client.infer(model, inputs=[tensor], outputs=outputs, headers=headers())
        got = result.as_numpy("probabilities")
        assert got.shape == want.shape, (got.shape, want.shape)
        assert np.allclose(got, want, atol=1e-6), np.abs(got - want).max()
        labels = [v.decode() if isinstance(v, bytes) else str(v) for v in result.as_numpy("label")]
        assert labels == [str(l) for l in expected["labels"]], (labels, expected["labels"])
        checked.append("binary" if binary else "json")

    try:
        bad = httpclient.InferInput("input", [1, 3], "FP32")
        bad.set_data_from_numpy(np.zeros((1, 3), dtype=np.float32))
        client.infer(model, inputs=[bad], headers=headers())
        raise AssertionError("a wrong row length was accepted")
    except httpclient.InferenceServerException as err:
        assert "expects" in str(err), str(err)
    print(json.dumps({"ok": True, "checked": checked, "version": metadata["versions"]}))


if __name__ == "__main__":
    main()
