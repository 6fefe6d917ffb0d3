"""The README and /docs work for a newcomer: nothing outside the repository,
nothing from a CDN."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def _readme() -> str:
    return (ROOT / "README.md").read_text()


def test_readme_points_only_inside_the_repository() -> None:
    readme = _readme()
    # "../x" leaves the repository; ".../x" is an ellipsis in a route.
    outside = re.findall(r"(?<!\.)\.\./[\w./-]*", readme)
    assert not outside, f"the README sends readers outside the repository: {outside}"
    # Every Markdown link to a file, and every backticked path to a document, exists.
    targets = re.findall(r"\]\(([^)#\s]+)\)", readme) + re.findall(r"`([\w./-]+\.md)`", readme)
    local = [t for t in targets if not t.startswith(("http://", "https://", "mailto:"))]
    missing = [t for t in local if not (ROOT / t).exists()]
    assert not missing, f"README links to files that are not in the repository: {missing}"
    assert "docs/API.md" in local


def test_quick_start_shows_local_mail_servers() -> None:
    readme = _readme()
    quick_start = readme[readme.index("## Quick start") : readme.index("## Commands")]
    assert "MAILFLEET_ALLOW_PRIVATE_NETWORKS=true" in quick_start
    assert "FORBIDDEN_TARGET" in quick_start


async def test_docs_load_swagger_ui_from_local_files(client: httpx.AsyncClient) -> None:
    page = await client.get("/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    # Nothing on the page comes from another host: offline, it still works.
    assert not re.search(r"(src|href)=\"(https?:)?//", html), html
    assets = re.findall(r"(?:src|href)=\"(/static/[^\"]+)\"", html)
    assert {a.rsplit("/", 1)[1] for a in assets} == {
        "swagger-ui-bundle.js",
        "swagger-ui.css",
        "favicon-32x32.png",
    }
    for asset in assets:
        response = await client.get(asset)
        assert response.status_code == 200, asset
        assert len(response.content) > 500, asset
    bundle = await client.get("/static/swagger-ui/swagger-ui-bundle.js")
    assert "SwaggerUIBundle" in bundle.text
    assert "'/openapi.json'" in html
    # ReDoc would load from a CDN; it is not offered.
    assert (await client.get("/redoc")).status_code == 404


def test_swagger_ui_ships_with_its_licence() -> None:
    vendored = ROOT / "src" / "mailfleet" / "static" / "swagger-ui"
    assert "Apache License" in (vendored / "LICENSE").read_text()
    assert (vendored / "NOTICE").exists()
