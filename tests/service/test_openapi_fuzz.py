"""Schemathesis against the service's own OpenAPI schema (issue 8).

Every operation gets generated requests, valid ones and invalid ones: no answer may be
a 5xx, and every answer must match what the schema declares for it (status code,
content type, headers, body). Bounded and deterministic: a fixed number of examples
per operation, derandomized. (Schemathesis' pytest plugin does not run under this
pytest, so the operations are driven through its Python API.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.python.asgi import shutdown_lifespans
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from service.app import create_app
from service.settings import Settings

ADMIN = "fuzz-admin-key"
#: What issue 8 asks: no 5xx, and every answer as declared. (Schemathesis' acceptance checks
#: are left out: "any bytes" is schema-valid for an image upload, yet is rightly refused.)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_headers_conformance, response_schema_conformance]
BOUNDED = settings(max_examples=12, derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def api_schema(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[schemathesis.BaseSchema]:
    url = f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'log.db'}"
    app = create_app(Settings(model_dir=tiny_bundle, database_url=url, migrate_on_start=True, admin_api_keys=[ADMIN]))
    yield schemathesis.openapi.from_asgi("/openapi.json", app)
    shutdown_lifespans()  # schemathesis started the app's lifespan: stop its threads now


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_api_conforms_to_its_schema_and_never_5xx(api_schema: schemathesis.BaseSchema, mode: GenerationMode) -> None:
    failures: list[str] = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) > 5
    for op in operations:

        @BOUNDED
        @given(case=op.as_strategy(generation_mode=mode))
        def check(case: schemathesis.Case) -> None:
            # The admin key lets the admin endpoints be fuzzed too, not only refused.
            case.call_and_validate(headers={"x-api-key": ADMIN}, checks=CHECKS)

        try:
            check()
        except Unsatisfiable:  # nothing in this operation can be made invalid (no parameters, no body)
            assert mode == GenerationMode.NEGATIVE, op.label
        except Exception as e:  # noqa: BLE001 -- collect every operation's failure, then report them all
            failures.append(f"{op.label}: {e}")
    assert not failures, "\n\n".join(failures)
