"""docs/settings.md is the generator's output for the code as it is: no setting undocumented."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic_settings import BaseSettings

from service.settings import Settings
from service.settings_doc import OTHER, _comments, page, rows
from tests.conftest import POSTGRES_ADMIN_URL, REPO
from training.settings import TrainingSettings


def test_the_committed_page_is_the_generated_one() -> None:
    committed = (REPO / "docs" / "settings.md").read_text()
    assert committed == page(), "regenerate: python -m service.settings_doc > docs/settings.md"


def test_every_setting_has_a_row_with_a_meaning_and_its_real_default() -> None:
    table = {v: (t, d, m) for v, t, d, m in rows()}
    for cls in (Settings, TrainingSettings):
        for field, info in cls.model_fields.items():
            _, default, meaning = table[f"VIGIL_{field.upper()}"]
            assert meaning, f"{field} has no #: comment in {cls.__name__}"
            if isinstance(info.default, (int, float, str)) and not isinstance(info.default, bool):
                assert default == f"`{info.default}`", (field, default)
    assert table["VIGIL_SHUTDOWN_TIMEOUT_S"][0] == "float (> 0)" and table["VIGIL_PORT"][0] == "int (≥ 0, ≤ 65535)"
    # Fields under one comment share it; the comment right above a field is its own.
    upload = table["VIGIL_MAX_UPLOAD_BYTES"][2]
    assert upload.startswith("Upload limits") and table["VIGIL_MAX_IMAGE_SIDE"][2] == upload
    assert table["VIGIL_TORCH_THREADS"][2].startswith("Torch intra-op threads")


class _Fake(BaseSettings):
    #: Shared by the two lines.
    first: int = 1
    second: int = 2

    third: int = 3


def test_a_comment_is_shared_only_by_the_fields_right_under_it() -> None:
    assert _comments(_Fake) == {"first": "Shared by the two lines.", "second": "Shared by the two lines.", "third": ""}


#: Where a variable can be read or set: the code, the container files, the build and CI
#: (not the generator, whose list of the other variables would count as their use).
SOURCES = ["service", "models", "training", "benchmarks", "scripts", "deploy", ".ci"]
FILES = ["docker-compose.yml", "Dockerfile", "Makefile", "tests/conftest.py"]
GENERATOR = Path(REPO, "service", "settings_doc.py")


def test_every_variable_the_project_reads_is_on_the_page_and_no_other() -> None:
    paths = [p for d in SOURCES for p in Path(REPO, d).rglob("*") if p.is_file() and p.suffix in ("", ".py", ".sh", ".yml", ".yaml", ".example")]
    texts = [p.read_text(errors="replace") for p in paths if p != GENERATOR] + [Path(REPO, f).read_text() for f in FILES]
    used = set(re.findall(r"\bVIGIL_[A-Z0-9_]*[A-Z0-9]\b", "\n".join(texts)))
    documented = {v for v, _, _, _ in rows()}
    assert used - documented == set()
    assert {v for v, _, _, _ in OTHER} <= used  # each extra row is a variable something uses
    assert re.search(r'environ\.get\("VIGIL_DEBUG"', Path(REPO, "service", "cli.py").read_text())
    table = {v: d for v, _, d, _ in rows()}
    if POSTGRES_ADMIN_URL.endswith("127.0.0.1:5432/test"):  # the default, unless the environment overrides it
        assert table["VIGIL_TEST_POSTGRES_URL"] == f"`{POSTGRES_ADMIN_URL}`"
