"""The README and the deployment files stay true to the code: every environment variable the code reads is in
the configuration table, the API section is what the lexicons generate, and compose.yaml is valid."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

from appview import api_doc
from indexer.settings import _Env

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()

# os.environ.get("X"), e.get("X"), e.flag("X", ...) and the other typed reads of indexer/settings.py (the public
# methods of its `_Env`),
# os.getenv("X"), os.environ["X"], "X" in os.environ
_ENV_READS = "|".join(name for name in vars(_Env) if not name.startswith("_"))
_READS = re.compile(
    rf"""(?:\.(?:{_ENV_READS})|getenv)\(\s*["']([A-Z][A-Z0-9]*_[A-Z0-9_]+)["']"""
    r"""|environ\[\s*["']([A-Z][A-Z0-9]*_[A-Z0-9_]+)["']\s*\]"""
    r"""|["']([A-Z][A-Z0-9]*_[A-Z0-9_]+)["']\s+(?:not\s+)?in\s+(?:os\.)?environ"""
)


def env_vars_read(*dirs: str) -> dict[str, set[str]]:
    """variable -> files reading it, over the Python files under `dirs`."""
    found: dict[str, set[str]] = {}
    for d in dirs:
        for path in sorted((ROOT / d).rglob("*.py")):
            for match in _READS.finditer(path.read_text()):
                name = next(g for g in match.groups() if g)
                found.setdefault(name, set()).add(str(path.relative_to(ROOT)))
    return found


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start : end if end != -1 else None]


def test_the_scanner_finds_what_it_should() -> None:
    found = env_vars_read("indexer", "appview")
    # Known reads in the settings modules: if these vanish, the scan is broken, not the code.
    assert {"DATABASE_URL", "PLYR_APPVIEW_PUBLIC_HOST", "JETSTREAM_URL"} <= set(found)


def test_every_env_var_the_code_reads_is_in_the_configuration_table() -> None:
    table = section("Configuration")
    listed = set(re.findall(r"`([A-Z][A-Z0-9]*_[A-Z0-9_]+)`", table))
    missing = {name: sorted(files) for name, files in env_vars_read("indexer", "appview").items() if name not in listed}
    assert not missing, f"add these to the README's configuration table: {missing}"


def test_test_and_bench_env_vars_are_documented() -> None:
    missing = sorted(n for n in env_vars_read("tests", "bench") if f"`{n}`" not in README)
    assert not missing, f"mention these in the README (Development): {missing}"


def test_api_section_is_generated_from_the_lexicons() -> None:
    generated = api_doc.render()
    assert api_doc.replace_section(README, generated) == README, (
        "README API section is stale: run `uv run python -m appview.api_doc --write`"
    )
    # Every query lexicon is in it, with its parameters.
    for nsid, main in api_doc.methods():
        assert f"/xrpc/{nsid}`" in generated
        for param in (main.get("parameters") or {}).get("properties") or {}:
            assert f"`{param}`" in generated.split(f"/xrpc/{nsid}`", 1)[1].split("\n", 1)[0]


def test_api_doc_renders_a_procedure(tmp_path: Path) -> None:
    (tmp_path / "doThing.json").write_text(
        '{"lexicon": 1, "id": "fm.example.doThing", "defs": {"main": {"type": "procedure",'
        ' "description": "Does | a thing.", "input": {"encoding": "audio/*"},'
        ' "output": {"encoding": "application/json", "schema": {"type": "object", "required": ["sha256"],'
        ' "properties": {"sha256": {"type": "string"}, "size": {"type": "integer"}}}},'
        ' "errors": [{"name": "TooLarge"}]}}}'
    )
    (tmp_path / "rec.json").write_text('{"lexicon": 1, "id": "fm.example.rec", "defs": {"main": {"type": "record"}}}')
    out = api_doc.render(tmp_path)
    rows = out.splitlines()[2:]
    assert rows == [
        "| `POST /xrpc/fm.example.doThing` | procedure | — | audio/* "
        "| application/json {`sha256`: string, `size`?: integer} | `TooLarge` | Does \\| a thing. |"
    ]


def test_api_doc_check_mode_detects_a_stale_readme(tmp_path: Path) -> None:
    stale = tmp_path / "README.md"
    stale.write_text(f"# x\n{api_doc.BEGIN}\n| old |\n{api_doc.END}\n")
    assert api_doc.main(["--check", "--readme", str(stale)]) == 1
    assert api_doc.main(["--write", "--readme", str(stale)]) == 0
    assert api_doc.main(["--check", "--readme", str(stale)]) == 0
    assert "fm.plyr.getLatestTracks" in stale.read_text()


def _compose() -> list[str] | None:
    docker = shutil.which("docker")
    if docker is None:
        return None
    probe = subprocess.run([docker, "compose", "version"], capture_output=True, timeout=30)
    return [docker, "compose"] if probe.returncode == 0 else None


def test_compose_file_is_valid() -> None:
    compose = _compose()
    if compose is None:
        pytest.skip("no docker client with the compose plugin (.ci/run installs it where docker exists)")
    done = subprocess.run([*compose, "config", "-q"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    rendered = subprocess.run(
        [*compose, "config", "--format", "json"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "APPVIEW_REPLICAS": "3"},
    )
    assert rendered.returncode == 0, rendered.stderr
    import json

    services = json.loads(rendered.stdout)["services"]
    assert {"postgres", "minio", "minio-init", "migrate", "indexer", "appview"} <= set(services)
    assert services["appview"]["deploy"]["replicas"] == 3
    for name in ("postgres", "minio", "indexer", "appview"):
        assert services[name].get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
    assert "/xrpc/_health" in " ".join(services["appview"]["healthcheck"]["test"])
    env = services["appview"]["environment"]
    assert env["S3_ENDPOINT_URL"] == "http://minio:9000" and env["S3_BUCKET"]
    assert "DATABASE_REPLICA_URL" in env
    assert services["indexer"]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"


def test_dockerfile_runs_unprivileged_with_a_healthcheck() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER (?!root)\S+", dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK .*\n?.*_health", dockerfile, re.M)
    assert "uv sync --frozen --no-dev" in dockerfile
