"""A client generated from the served /openapi.json by openapi-python-client drives a real flow.

Frontend teams generate their clients this way: the names they read come from OPERATION_IDS and
the schema names, and the client must parse our answers, problems included.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import httpx
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.main import create_app
from app.platform.config import Settings
from app.platform.errors import PROBLEM_BASE
from tests.conftest import KeyFactory
from tests.factories import response_body, survey_body

PACKAGE = "cx_survey_client"


def _snake(operation_id: str) -> str:
    """The generator's name for an operation's module and function: createOrg → create_org."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", operation_id).lower()


@pytest.fixture(scope="module")
async def document(settings: Settings, engine: AsyncEngine) -> dict[str, Any]:
    """The OpenAPI document as the app serves it."""
    application = create_app(settings, engine=engine)
    transport = httpx.ASGITransport(app=application)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        r = await client.get("/openapi.json")
    assert r.status_code == 200, r.text
    served: dict[str, Any] = r.json()
    return served


@pytest.fixture(scope="module")
def generated(document: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The client package generated (once per module) from the document, importable."""
    root = tmp_path_factory.mktemp("generated")
    spec = root / "openapi.json"
    spec.write_text(json.dumps(document), encoding="utf-8")
    # The generator lives in a directory of its own (`make install` puts it there: it wants an
    # older typer than the service's); its post-hooks run ruff, which lives beside this
    # interpreter.
    tool = Path(sys.prefix) / "generator"
    assert (tool / "openapi_python_client").is_dir(), f"no generator in {tool}: run make install"
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    run = subprocess.run(
        [
            *(sys.executable, "-m", "openapi_python_client", "generate"),
            *("--path", str(spec), "--meta", "none", "--output-path", str(root / PACKAGE)),
            "--fail-on-warning",
        ],
        cwd=root,
        env={**os.environ, "PATH": path, "PYTHONPATH": str(tool)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    said = f"{run.stdout}\n{run.stderr}"
    assert run.returncode == 0, said
    assert "Warning" not in said, said
    assert "Error" not in said, said
    sys.path.insert(0, str(root))
    try:
        yield root / PACKAGE
    finally:
        sys.path.remove(str(root))
        for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
            del sys.modules[name]


def _operation(package: Path, operation_id: str) -> ModuleType:
    """The generated module of an operation (api/<tag>/<snake_case id>.py)."""
    (found,) = package.glob(f"api/*/{_snake(operation_id)}.py")
    tag = found.parent.name
    return importlib.import_module(f"{PACKAGE}.api.{tag}.{found.stem}")


def test_function_modules_are_named_after_the_operation_ids(
    generated: Path, document: dict[str, Any]
) -> None:
    modules = {
        p.relative_to(generated / "api").as_posix()
        for p in generated.glob("api/*/*.py")
        if p.name != "__init__.py"
    }
    ids = [op["operationId"] for ops in document["paths"].values() for op in ops.values()]
    assert {m.split("/")[1].removesuffix(".py") for m in modules} == {_snake(i) for i in ids}
    assert len(modules) == len(ids)
    for module in (
        "orgs/create_org.py",
        "orgs/get_org.py",
        "surveys/create_survey.py",
        "responses/post_response.py",
        "responses/post_response_batch.py",
        "indices/get_org_index.py",
        "indices/get_org_children_index.py",
        "erasure/delete_customer_responses.py",
        "health/get_liveness.py",
    ):
        assert module in modules, sorted(modules)


def test_models_are_named_after_our_schemas(generated: Path, document: dict[str, Any]) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    names = set(models.__all__)
    for schema in ("OrgCreate", "OrgOut", "SurveyIn", "ResponseIn", "OrgIndex", "Problem"):
        assert schema in names
    assert "PageOrgOut" in names  # the schema Page_OrgOut_
    # FastAPI names a schema it synthesizes after the operation (Body_<id>, Response_<id>):
    # a body or an answer without a model of its own. A client should read our names.
    synthesized = sorted(
        s for s in document["components"]["schemas"] if s.startswith(("Body_", "Response_"))
    )
    assert not synthesized


@pytest.fixture
async def api(app: Any, make_key: KeyFactory, generated: Path) -> AsyncIterator[Any]:
    """The generated AuthenticatedClient with an admin key, talking to the app in-process."""
    package = importlib.import_module(PACKAGE)
    client = package.AuthenticatedClient(
        base_url="http://test",
        token=await make_key("admin"),
        httpx_args={"transport": httpx.ASGITransport(app=app)},
    )
    async with client:
        yield client


async def test_a_flow_through_the_generated_client(api: Any, generated: Path) -> None:
    models = importlib.import_module(f"{PACKAGE}.models")
    create_org = _operation(generated, "createOrg")
    for code, parent in (("HQ", None), ("KR-DELIVERY-SEOUL", "HQ")):
        body = models.OrgCreate(code=code, name=f"Org {code}", parent=parent)
        created = await create_org.asyncio_detailed(client=api, body=body)
        assert created.status_code == 201, created.content
        assert isinstance(created.parsed, models.OrgOut)
        assert created.parsed.code == code

    survey = await _operation(generated, "createSurvey").asyncio_detailed(
        client=api, body=models.SurveyIn.from_dict(survey_body())
    )
    assert survey.status_code == 201, survey.content
    assert isinstance(survey.parsed, models.SurveyOut)
    assert survey.parsed.code == "delivery-csat"

    post_response = _operation(generated, "postResponse")
    scores = [5, 4, 4, 3, 5]
    bodies = [
        models.ResponseIn.from_dict(
            response_body(external_id=f"order-{i}/delivery", answers={"overall": score})
        )
        for i, score in enumerate(scores)
    ]
    first = None
    for body in bodies:
        posted = await post_response.asyncio_detailed(client=api, body=body)
        assert posted.status_code == 201, posted.content
        assert isinstance(posted.parsed, models.ResponseOut)
        first = first or posted.parsed
    retried = await post_response.asyncio_detailed(client=api, body=bodies[0])
    assert retried.status_code == 200, retried.content  # the same response, stored once
    assert isinstance(retried.parsed, models.ResponseOut)
    assert first is not None
    assert retried.parsed.id == first.id

    index = await _operation(generated, "getOrgIndex").asyncio(
        "HQ", client=api, period="2026-11", min_n=5
    )
    assert isinstance(index, models.OrgIndex)
    assert index.org == "HQ"
    assert index.n == len(scores)
    assert not index.suppressed
    assert index.csi == pytest.approx(sum(100 * (s - 1) / 4 for s in scores) / len(scores))

    missing = await _operation(generated, "getOrg").asyncio_detailed("NOPE", client=api)
    assert missing.status_code == 404
    assert missing.headers["content-type"].startswith("application/problem+json")
    assert isinstance(missing.parsed, models.Problem)
    assert missing.parsed.status == 404
    assert missing.parsed.type_ == f"{PROBLEM_BASE}not-found"
    assert missing.parsed.title == "Org not found"


async def test_the_public_invitation_flow_through_the_generated_client(
    api: Any, app: Any, generated: Path
) -> None:
    """A frontend team's path: the touchpoint invites with its key, the browser renders and
    answers with the token through a client that holds no key."""
    models = importlib.import_module(f"{PACKAGE}.models")
    package = importlib.import_module(PACKAGE)
    for code, parent in (("HQ", None), ("KR-DELIVERY-SEOUL", "HQ")):
        body = models.OrgCreate(code=code, name=f"Org {code}", parent=parent)
        await _operation(generated, "createOrg").asyncio_detailed(client=api, body=body)
    await _operation(generated, "createSurvey").asyncio_detailed(
        client=api, body=models.SurveyIn.from_dict(survey_body())
    )
    invitation = {
        "survey": "delivery-csat",
        "org": "KR-DELIVERY-SEOUL",
        "source": "delivery-app",
        "external_id": "order-1/delivery",
        "occurred_at": "2026-11-20T10:00:00+09:00",
        "customer": {"ref": "customer-42", "type": "end_user"},
    }
    created = await _operation(generated, "createInvitation").asyncio_detailed(
        client=api, body=models.InvitationIn.from_dict(invitation)
    )
    assert created.status_code == 201, created.content
    assert isinstance(created.parsed, models.IssuedInvitation)
    assert created.parsed.status == models.InvitationStatus.PENDING
    token = created.parsed.token
    assert isinstance(token, str)

    browser = package.Client(
        base_url="http://test", httpx_args={"transport": httpx.ASGITransport(app=app)}
    )
    async with browser:
        page = await _operation(generated, "getPublicInvitation").asyncio(token, client=browser)
        assert isinstance(page, models.PublicInvitation)
        assert page.survey.code == "delivery-csat"
        assert [q.key for q in page.survey.questions] == ["overall", "reason", "comment"]
        assert page.org.name == "Org KR-DELIVERY-SEOUL"

        submit = _operation(generated, "submitPublicInvitation")
        answers = models.PublicAnswers.from_dict({"answers": {"overall": 4, "reason": "kind"}})
        answered = await submit.asyncio_detailed(token, client=browser, body=answers)
        assert answered.status_code == 201, answered.content
        assert answered.parsed.status == models.InvitationStatus.ANSWERED
        again = await submit.asyncio_detailed(token, client=browser, body=answers)
        assert again.status_code == 409
        assert isinstance(again.parsed, models.Problem)
        assert again.parsed.type_ == f"{PROBLEM_BASE}invitation-answered"
        forged = await _operation(generated, "getPublicInvitation").asyncio_detailed(
            "A" * 32, client=browser
        )
        assert forged.status_code == 404
        assert isinstance(forged.parsed, models.Problem)

    stats = await _operation(generated, "getInvitationStats").asyncio(
        "HQ", client=api, period="2026-11"
    )
    assert isinstance(stats, models.InvitationStats)
    assert (stats.sent, stats.answered, stats.response_rate) == (1, 1, 1.0)
