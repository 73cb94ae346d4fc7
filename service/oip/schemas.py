"""Open Inference Protocol (KServe v2) REST messages, as the specification names them.

Unknown keys are refused (422 `unknown_field`), as on v1: the specification's messages
have a fixed set of keys, and client extensions (Triton's `sequence_id`, `priority`,
`binary_data_output`...) travel inside the `parameters` objects, which stay open.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt

from service.params import Text
from service.schemas import EXAMPLE_ERROR_ID

#: Client strings are `Text`: the id is echoed and names appear in error messages.
Param = Text | int | float | bool


class _Open(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RequestInput(_Open):
    name: Text = Field(
        description="Input tensor name; Vigil's model has one input, `input`."
    )
    shape: list[StrictInt] = Field(
        description="[N, 1, 28, 28] or [N, 28, 28] for the shipped model (from the manifest's input spec)."
    )
    datatype: Text = Field(
        description="Must be FP32: pixels in [0, 1], before normalisation."
    )
    parameters: dict[Text, Param] | None = Field(
        None,
        description="`binary_data_size` when the data follows the JSON (Triton binary extension).",
    )
    data: list[Any] | None = Field(
        None,
        description="Row-major values, flat or nested; omitted when sent as binary.",
    )


class RequestOutput(_Open):
    name: Text
    parameters: dict[Text, Param] | None = Field(
        None, description="`binary_data: true` returns this output as binary."
    )


class InferRequest(_Open):
    id: Text | None = Field(
        None, description="Client's id for this request; echoed back."
    )
    parameters: dict[Text, Param] | None = Field(
        None, description="`binary_data_output: true` returns every output as binary."
    )
    inputs: list[RequestInput] = Field(min_length=1)
    outputs: list[RequestOutput] | None = Field(
        None, description="Outputs to return; all of them when omitted."
    )


class ResponseOutput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Param] | None = None
    data: list[Any] | None = None


class InferResponse(BaseModel):
    model_name: str
    model_version: str
    id: str | None = None
    parameters: dict[str, Param] = {}
    outputs: list[ResponseOutput]


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int] = Field(description="-1 marks a variable dimension (the batch).")


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "name": "vigil",
                "version": "1.0.0",
                "extensions": ["binary_tensor_data"],
            }
        }
    )

    name: str
    version: str
    extensions: list[str]


class Live(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"live": True}})

    live: bool


class Ready(BaseModel):
    model_config = ConfigDict(json_schema_extra={"example": {"ready": True}})

    ready: bool


class ModelReady(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={"example": {"name": "mnist-default", "ready": True}}
    )

    name: str
    ready: bool


class OipError(BaseModel):
    """Errors on /v2 paths: OIP's string `error` (what its clients print), with Vigil's code and request id."""

    model_config = ConfigDict(
        json_schema_extra={
            "example": {
                "error": "the input contains NaN or infinite values",
                "code": "non_finite_values",
                "request_id": EXAMPLE_ERROR_ID,
            }
        }
    )

    error: str = Field(description="Human-readable explanation (OIP's error message).")
    code: str | None = Field(
        description="Vigil's stable machine-readable error code, as on /v1."
    )
    request_id: str | None = Field(description="Id of the failed request, as logged.")
