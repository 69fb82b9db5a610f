"""Every LiteLLM proxy config in the corpus passes `check-config`.

The corpus (tests/unit/configs/litellm/) holds proxy configs copied verbatim
from LiteLLM's repository (example configs, tests, docs) plus our default
config and the README's example; sources.tsv records where each came from.
LiteLLM loads each of them, so Switchboard must too: what it does not
implement is listed as ignored, never refused.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from switchboard.cli import main
from switchboard.config import Settings, load_settings

CORPUS = Path(__file__).parent / "configs" / "litellm"
REPO = Path(__file__).resolve().parents[2]
ENV_REF = re.compile(r"os\.environ/([A-Za-z_][A-Za-z0-9_]*)")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
README = "switchboard-readme-configuration.yaml"
FILES = sorted(p.name for p in CORPUS.glob("*.yaml"))


def _sources() -> dict[str, list[str]]:
    lines = (CORPUS / "sources.tsv").read_text(encoding="utf-8").splitlines()
    assert lines[0].split("\t") == ["file", "repo", "path", "commit"]
    return {row[0]: row[1:] for row in (line.split("\t") for line in lines[1:])}


def _env(path: Path) -> dict[str, str]:
    """A fake value for every variable the file names: the corpus's are not set here."""
    names = set(ENV_REF.findall(path.read_text(encoding="utf-8")))
    # A port must be a number to be taken (router_settings.redis_port is).
    return {name: "6379" if name.endswith("PORT") else f"fake-{name.lower()}" for name in names}


def _readme_with_tls_files(tmp_path: Path) -> Path:
    """The README's example names TLS files that check-config must find: make them."""
    for name in ("server.pem", "server.key", "clients-ca.pem"):
        (tmp_path / name).write_text("placeholder\n")
    text = (CORPUS / README).read_text(encoding="utf-8")
    out = tmp_path / README
    out.write_text(text.replace("/etc/switchboard/", f"{tmp_path}/"), encoding="utf-8")
    return out


def _path(name: str, tmp_path: Path) -> Path:
    return _readme_with_tls_files(tmp_path) if name == README else CORPUS / name


def test_the_corpus_is_large_and_every_file_has_a_recorded_source() -> None:
    sources = _sources()
    assert set(sources) == set(FILES)
    from_litellm = [f for f, (repo, _, commit) in sources.items() if repo == "BerriAI/litellm"]
    assert len(from_litellm) >= 30
    for name in from_litellm:
        _, path, commit = sources[name]
        assert COMMIT.match(commit), name
        assert path.startswith(("litellm/", "tests/", "docs/", "proxy_server_config.yaml")), name
    ours = {sources[f][1] for f in FILES if sources[f][0] != "BerriAI/litellm"}
    assert "configs/default.yaml" in ours
    assert any(path.startswith("README.md") for path in ours)


def test_the_default_config_in_the_corpus_is_the_repository_s() -> None:
    corpus = (CORPUS / "switchboard-default.yaml").read_text(encoding="utf-8")
    assert corpus == (REPO / "configs" / "default.yaml").read_text(encoding="utf-8")


@pytest.mark.parametrize("name", FILES)
def test_check_config_accepts_every_corpus_file(
    name: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _path(name, tmp_path)
    for key, value in _env(path).items():
        monkeypatch.setenv(key, value)
    assert main(["check-config", str(path)]) == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert out.splitlines()[-1].startswith("ok: ")


def _load(name: str) -> Settings:
    return load_settings(CORPUS / name, env=_env(CORPUS / name))


def test_rpm_and_tpm_beside_litellm_params_are_the_deployment_s_limits() -> None:
    settings = _load("load_balancer.yaml")
    first, second, third = settings.groups["gpt-3.5-turbo"]
    assert (first.rpm, first.tpm) == (3, 20000)
    assert (second.rpm, second.tpm) == (3, 20000)
    assert (third.rpm, third.tpm) == (None, None)
    assert settings.ignored == ("environment_variables",)


def test_top_level_sections_litellm_reads_are_listed_as_ignored() -> None:
    settings = _load("proxy_server_config.yaml")
    assert {"finetune_settings", "files_settings", "general_settings.pass_through_endpoints"} <= (
        set(settings.ignored)
    )
    assert settings.resolve("my-special-fake-model-alias-name") == "fake-openai-endpoint-3"
    assert settings.router.context_window_fallbacks == {"gpt-3.5-turbo": ("gpt-3.5-turbo-large",)}
    large = settings.groups["gpt-3.5-turbo-large"][0]
    assert (large.rpm, large.timeout_s, large.stream_timeout_s) == (480, 300, 60)


def test_a_fallback_from_no_group_is_ignored_by_path() -> None:
    settings = _load("oai_misc_config.yaml")
    assert "litellm_settings.context_window_fallbacks[0].gpt-3.5-turbo" in settings.ignored
    assert settings.router.context_window_fallbacks == {}


def test_include_brings_in_the_models_of_the_named_files() -> None:
    assert set(_load("config_with_include.yaml").groups) == {"included-model"}
    assert set(_load("config_with_multiple_includes.yaml").groups) == {
        "included-model-1",
        "included-model-2",
    }


def test_a_null_value_is_absent_and_yaml_1_1_numbers_read_as_litellm_reads_them() -> None:
    first, second = _load("queue.yaml").groups["gpt-3.5-turbo"]
    assert "api_key" not in first.params
    assert second.params["api_version"] == "2023-07-01-preview"
    assert [d.tpm for d in _load("azure_config_with_tpm.yaml").deployments] == [80000, 80000]


def test_model_info_keys_switchboard_does_not_use_are_listed() -> None:
    settings = _load("test_config_no_auth.yaml")
    assert "model_list[4].model_info.description" in settings.ignored
    assert len(settings.deployments) == 21


@pytest.mark.parametrize(
    "name", ["proxy_server_config.yaml", "load_balancer.yaml", "config_with_include.yaml", README]
)
def test_the_installed_command_accepts_corpus_files(name: str, tmp_path: Path) -> None:
    path = _path(name, tmp_path)
    command = Path(sys.executable).with_name("switchboard")
    done = subprocess.run(
        [str(command), "check-config", str(path)],
        env={**os.environ, **_env(path)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "ok: " in done.stdout


def test_the_readme_example_in_the_corpus_is_the_readme_s_own() -> None:
    """The copy is what the README shows: an edit to one without the other fails here."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    full = [b for b in blocks if "model_list" in b and "switchboard:" in b]
    assert (CORPUS / README).read_text(encoding="utf-8") in full
