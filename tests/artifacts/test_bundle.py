"""write_config_bundle: which files ship, how secrets are filtered, what is refused."""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
import re
import tarfile
import textwrap

import pytest
import yaml

from custom_components.esphome_remote_build.artifacts import (
    BundleError,
    bundle as bundle_module,
    config_scan,
    write_config_bundle,
)

ROOT_SECRETS = {
    "wifi_ssid": "home",
    "wifi_password": "hunter22",
    "api_key": "MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
    "ap_pw": "fallback1",
    "vars_icon": "mdi:star",
    "other_device_pw": "must never ship",
}


def make_tree(root: Path, files: dict[str, str | bytes]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content))
    return root


def read_bundle(path: Path) -> tuple[list[tarfile.TarInfo], dict[str, bytes]]:
    with tarfile.open(path, "r:gz") as tar:
        members = tar.getmembers()
        contents = {}
        for member in members:
            extracted = tar.extractfile(member)
            assert extracted is not None
            contents[member.name] = extracted.read()
    return members, contents


@pytest.fixture
def config(tmp_path: Path) -> Path:
    """A configuration using every kind of reference the bundler follows."""
    cfg = tmp_path / "config"
    make_tree(
        cfg,
        {
            "dev.yaml": f"""\
            esphome:
              name: dev1
              includes:
                - src
                - top.h
                - <Arduino.h>
                - 42
              includes_c:
                - c/lib.c
            substitutions:
              model: a
            packages:
              wifi: !include common/wifi.yaml
              extra: !include
                file: pkg/extra.yaml
                vars:
                  icon: !secret vars_icon
                  logo: images/vars-logo.png
              model: !include models/model-${{model}}.yaml
            sensor: !include_dir_merge_list sensors
            font:
              - file: fonts/Roboto.ttf
              - file: "gfonts://Roboto"
              - file: fonts/not-there.ttf
            image:
              - file: {cfg}/images/abs.png
              - file: https://example.com/remote.png
              - file: mdi:home
              - file: /nonexistent/path/x.png
              - file: images/${{model}}-icon.png
            external_components:
              - source: my_components
              - source:
                  type: local
                  path: more_components
              - source: github://esphome/esphome@dev
              - source:
                  type: git
                  url: https://github.com/x/y
            api:
              encryption:
                key: !secret api_key
            display:
              - lambda: !lambda 'it.image(0, 0, "not/a/file.png");'
            """,
            "secrets.yaml": yaml.safe_dump(ROOT_SECRETS),
            "common/wifi.yaml": """\
            wifi:
              ssid: !secret wifi_ssid
              password: !secret "wifi_password"
              ap: !include ap.yaml
            """,
            "common/ap.yaml": "password: !secret 'ap_pw'\n",
            "pkg/extra.yaml": "text_sensor:\n  - platform: version\n    icon: !secret pkg_icon\n",
            "pkg/secrets.yaml": "pkg_icon: !env_var ICON mdi:chip\nunused_pkg: nope\n",
            "models/model-a.yaml": "# a\n",
            "models/model-b.yaml": "# b\n",
            "models/.model-hidden.yaml": "# hidden: never a candidate\n",
            "sensors/a.yaml": "- platform: uptime\n",
            "sensors/b.yaml": "- platform: wifi_signal\n",
            "sensors/notes.txt": "not yaml",
            "sensors/.hidden.yaml": "- platform: hidden\n",
            "sensors/secrets.yaml": "leaked: yes\n",
            "src/a.h": "#pragma once\n",
            "src/b.cpp": "int b;\n",
            "src/.hidden.h": "",
            "src/__pycache__/x.pyc": b"\0",
            "top.h": "#define TOP 1\n",
            "c/lib.c": "int c;\n",
            "fonts/Roboto.ttf": b"\0\1\0\0fake font",
            "images/abs.png": b"\x89PNG abs",
            "images/vars-logo.png": b"\x89PNG vars",
            "images/a-icon.png": b"\x89PNG a",
            "images/b-icon.png": b"\x89PNG b",
            "images/unreferenced.png": b"\x89PNG unused",
            "my_components/my/__init__.py": "CODEOWNERS = []\n",
            "my_components/my/__pycache__/c.pyc": b"\0",
            "my_components/.git/config": "[core]\n",
            "more_components/other/__init__.py": "",
            "other_device.yaml": "esphome:\n  name: other\n",
        },
    )
    return cfg


def test_bundle_holds_exactly_what_the_configuration_needs(tmp_path: Path, config: Path) -> None:
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    out = out_dir / "dev.tar.gz"

    info = write_config_bundle(config, "dev.yaml", out, esphome_version="2026.10.0")

    members, contents = read_bundle(out)
    manifest = json.loads(contents["manifest.json"])
    yaml_in_load_order = [
        "dev.yaml",
        "secrets.yaml",
        "sensors/a.yaml",
        "sensors/b.yaml",
        "common/wifi.yaml",
        "common/ap.yaml",
        "pkg/extra.yaml",
        "pkg/secrets.yaml",
        "models/model-a.yaml",
        "models/model-b.yaml",
    ]
    others = {
        "src/a.h",
        "src/b.cpp",
        "top.h",
        "c/lib.c",
        "images/vars-logo.png",
        "fonts/Roboto.ttf",
        "images/abs.png",
        "images/a-icon.png",
        "images/b-icon.png",
        "my_components/my/__init__.py",
        "more_components/other/__init__.py",
    }
    assert manifest == {
        "manifest_version": 1,
        "esphome_version": "2026.10.0",
        "config_filename": "dev.yaml",
        "config_dir": str(config.resolve()),
        "files": manifest["files"],
        "has_secrets": True,
    }
    assert manifest["files"][: len(yaml_in_load_order)] == yaml_in_load_order
    assert set(manifest["files"][len(yaml_in_load_order) :]) == others
    # ESPHome's member order: manifest, filtered secrets files, the rest sorted by path.
    assert [m.name for m in members] == [
        "manifest.json",
        "pkg/secrets.yaml",
        "secrets.yaml",
        *sorted(set(manifest["files"]) - {"secrets.yaml", "pkg/secrets.yaml"}),
    ]
    for member in members:
        assert member.isreg()
        assert (member.mode, member.mtime, member.uid, member.gid) == (0o644, 0, 0, 0)
        assert (member.uname, member.gname) == ("", "")
    for name in set(manifest["files"]) - {"secrets.yaml", "pkg/secrets.yaml"}:
        assert contents[name] == (config / name).read_bytes(), name
    assert info.files == manifest["files"]
    assert info.path == out
    assert info.size == out.stat().st_size
    assert info.sha256 == hashlib.sha256(out.read_bytes()).hexdigest()
    assert out.stat().st_mode & 0o777 == 0o600
    assert sorted(p.name for p in out_dir.iterdir()) == ["dev.tar.gz"]


def test_secrets_are_filtered_per_file(tmp_path: Path, config: Path) -> None:
    write_config_bundle(config, "dev.yaml", tmp_path / "b.tar.gz")

    _, contents = read_bundle(tmp_path / "b.tar.gz")

    used = {"wifi_ssid", "wifi_password", "api_key", "ap_pw", "vars_icon"}
    assert yaml.safe_load(contents["secrets.yaml"]) == {k: ROOT_SECRETS[k] for k in used}
    assert b"must never ship" not in b"".join(contents.values())
    # Values keep their YAML form: the tag survives for ESPHome's loader to resolve.
    assert contents["pkg/secrets.yaml"] == b"pkg_icon: !env_var 'ICON mdi:chip'\n"
    assert b"leaked" not in b"".join(contents.values())


def test_bundle_is_deterministic(tmp_path: Path, config: Path) -> None:
    first = write_config_bundle(config, "dev.yaml", tmp_path / "1.tar.gz")
    second = write_config_bundle(config, "dev.yaml", tmp_path / "2.tar.gz")
    assert first.sha256 == second.sha256
    assert (tmp_path / "1.tar.gz").read_bytes() == (tmp_path / "2.tar.gz").read_bytes()


def test_no_secret_used_means_no_secrets_file(tmp_path: Path) -> None:
    cfg = make_tree(
        tmp_path / "c",
        {
            "plain.yml": "esphome:\n  name: plain\n",
            "secrets.yaml": "wifi_password: nope\n",
        },
    )
    info = write_config_bundle(cfg, "plain.yml", tmp_path / "b.tar.gz")

    members, contents = read_bundle(tmp_path / "b.tar.gz")

    assert [m.name for m in members] == ["manifest.json", "plain.yml"]
    assert json.loads(contents["manifest.json"])["has_secrets"] is False
    assert info.files == ["plain.yml"]


def test_secret_in_subfolder_falls_back_to_the_config_folder(tmp_path: Path) -> None:
    cfg = make_tree(
        tmp_path / "c",
        {
            "dev.yaml": "packages:\n  a: !include deep/er/a.yaml\n",
            "deep/er/a.yaml": "wifi:\n  password: !secret pw\n",
            "secrets.yaml": "pw: rootpw\nother: x\n",
        },
    )
    info = write_config_bundle(cfg, "dev.yaml", tmp_path / "b.tar.gz")

    _, contents = read_bundle(tmp_path / "b.tar.gz")

    assert info.files == ["dev.yaml", "deep/er/a.yaml", "secrets.yaml"]
    assert yaml.safe_load(contents["secrets.yaml"]) == {"pw": "rootpw"}


def test_include_cycles_and_aliases_terminate(tmp_path: Path) -> None:
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8)
    )
    cfg = make_tree(
        tmp_path / "c",
        {
            "dev.yaml": "packages:\n  a: !include a.yaml\nlaughs: !include laughs.yaml\n",
            "a.yaml": "packages:\n  back: !include dev.yaml\n  self: !include a.yaml\n",
            "laughs.yaml": laughs,
        },
    )
    info = write_config_bundle(cfg, "dev.yaml", tmp_path / "b.tar.gz")
    assert info.files == ["dev.yaml", "a.yaml", "laughs.yaml"]


def test_front_matter_document_is_scanned_too(tmp_path: Path) -> None:
    cfg = make_tree(
        tmp_path / "c",
        {
            "dev.yaml": "meta: !include meta.yaml\n---\nesphome:\n  name: x\n",
            "meta.yaml": "{}\n",
        },
    )
    assert write_config_bundle(cfg, "dev.yaml", tmp_path / "b.tar.gz").files == [
        "dev.yaml",
        "meta.yaml",
    ]


def test_absolute_reference_through_the_config_folder_as_given(tmp_path: Path) -> None:
    """Home Assistant may pass a symlinked path; absolute references may use either form."""
    real = tmp_path / "real"
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    make_tree(
        real,
        {
            "dev.yaml": f"a: !include {link}/a.yaml\nb: !include {real}/b.yaml\n",
            "a.yaml": "{}\n",
            "b.yaml": "{}\n",
        },
    )
    info = write_config_bundle(link, "dev.yaml", tmp_path / "b.tar.gz")
    assert info.files == ["dev.yaml", "a.yaml", "b.yaml"]


def test_existing_output_is_replaced(tmp_path: Path) -> None:
    cfg = make_tree(tmp_path / "c", {"dev.yaml": "esphome:\n  name: x\n"})
    out = tmp_path / "b.tar.gz"
    out.write_bytes(b"old")
    write_config_bundle(cfg, "dev.yaml", out)
    assert read_bundle(out)[1]["dev.yaml"] == b"esphome:\n  name: x\n"


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    make_tree(outside, {"x.yaml": "{}\n", "x.ttf": b"font", "d/y.yaml": "{}\n"})
    return outside


ERRORS = [
    ("dev.yaml: |\n  a: !include ../outside/x.yaml", "points outside the configuration folder"),
    ("dev.yaml: |\n  a: !include {outside}/x.yaml", "is outside the configuration folder"),
    ("dev.yaml: |\n  a: !include link.yaml\nlink.yaml -> {outside}/x.yaml", "via a symbolic link"),
    ("dev.yaml: |\n  a: !include_dir_list linked\nlinked -> {outside}/d", "via a symbolic link"),
    (
        "dev.yaml: |\n  esphome:\n    includes: [src]\nsrc/ok.h: ''\nsrc/evil.h -> {outside}/x.ttf",
        "via a symbolic link",
    ),
    ("dev.yaml: |\n  a: !include missing.yaml", "missing.yaml is not an existing file"),
    ("dev.yaml: |\n  a: !include sub\nsub/x.yaml: '{{}}'", "sub is not an existing file"),
    ("dev.yaml: |\n  a: !include_dir_named nowhere", "nowhere is not a folder"),
    ("dev.yaml: |\n  a: !include_dir_named f.yaml\nf.yaml: '{{}}'", "f.yaml is not a folder"),
    (
        "dev.yaml: |\n  a: !secret nope\nsecrets.yaml: 'yes: 1'",
        "!secret 'nope' in dev.yaml: the key is not defined in secrets.yaml",
    ),
    ("dev.yaml: |\n  a: !secret pw", "no secrets.yaml found"),
    (
        (
            "dev.yaml: |\n  a: !include p/a.yaml\np/a.yaml: 'x: !secret pw'\n"
            "p/secrets.yaml: 'o: 1'\nsecrets.yaml: 'pw: 1'"
        ),
        "the key is not defined in p/secrets.yaml",
    ),
    ("dev.yaml: |\n  a: !secret pw\nsecrets.yaml: '[pw]'", "secrets.yaml is not a YAML mapping"),
    (
        "dev.yaml: |\n  a: !secret pw\nsecrets.yaml: |\n  pw: 1\n  ---\n  pw: 2",
        "secrets.yaml is not a YAML mapping",
    ),
    ("dev.yaml: |\n  a: !include b.yaml\nb.yaml: 'a: [b'", "b.yaml is not valid YAML"),
    (
        "dev.yaml: |\n  a: !include secrets.yaml\nsecrets.yaml: 'pw: 1'",
        "refusing to ship secrets.yaml unfiltered",
    ),
    ("dev.yaml: |\n  font: [{{file: ../outside/x.ttf}}]", "points outside"),
    ("dev.yaml: |\n  font: [{{file: {outside}/x.ttf}}]", "is outside the configuration folder"),
    ("dev.yaml: |\n  a: !include {{vars: {{x: 1}}}}", "names no file"),
    ("dev.yaml: |\n  a: !include ''", "names no file"),
    ("dev.yaml: |\n  a: !include [a.yaml]", "!include in dev.yaml must be a single value"),
    ("dev.yaml: |\n  a: !secret {{k: v}}", "!secret in dev.yaml must be a single value"),
    ('dev.yaml: |\n  a: !include "a\\0.yaml"', "invalid path"),
    ("dev.yaml: |\n  external_components:\n    - source: gone", "gone is not a folder"),
    ("dev.yaml: |\n  esphome:\n    includes: [gone.h]", "gone.h cannot be read"),
    ("dev.yaml: |\n  a: !include ${{file}}", "is too dynamic to bundle"),
    ("dev.yaml: |\n  a: !include 'dev-${{x}}.yaml'", "no file matches 'dev-${{x}}.yaml'"),
    ("dev.yaml: |\n  a: !include b.yaml\nb.yaml: !!binary /w==", "b.yaml cannot be read"),
]


def _make_error_tree(cfg: Path, spec: str, outside: Path) -> None:
    """``spec`` is YAML: file name -> content; ``name -> target`` lines make symlinks."""
    lines = spec.format(outside=outside).splitlines()
    links = [line for line in lines if " -> " in line]
    tree = yaml.safe_load("\n".join(line for line in lines if " -> " not in line))
    for name, content in tree.items():
        data = content if isinstance(content, bytes) else str(content)
        make_tree(cfg, {name: data})
    for line in links:
        name, target = line.split(" -> ")
        (cfg / name).parent.mkdir(parents=True, exist_ok=True)
        (cfg / name).symlink_to(target)


@pytest.mark.parametrize(("spec", "match"), ERRORS)
def test_refused_configurations(tmp_path: Path, spec: str, match: str) -> None:
    cfg = tmp_path / "config"
    _make_error_tree(cfg, spec, _outside(tmp_path))
    out_dir = tmp_path / "out"
    out_dir.mkdir()

    with pytest.raises(BundleError, match=_literal(match)):
        write_config_bundle(cfg, "dev.yaml", out_dir / "b.tar.gz")

    assert list(out_dir.iterdir()) == []


def _literal(match: str) -> str:
    return re.escape(match.replace("{{", "{").replace("}}", "}"))


@pytest.mark.parametrize(
    "name",
    [
        "",
        "../dev.yaml",
        "sub/dev.yaml",
        "sub\\dev.yaml",
        ".dev.yaml",
        "dev.txt",
        "secrets.yaml",
        "secrets.yml",
        "dev\x00.yaml",
        "x" * 252 + ".yaml",
    ],
)
def test_bad_yaml_names(tmp_path: Path, name: str) -> None:
    with pytest.raises(BundleError, match=r"is not a plain \.yaml file name"):
        write_config_bundle(tmp_path, name, tmp_path / "b.tar.gz")


def test_fifo_is_not_bundled(tmp_path: Path) -> None:
    cfg = make_tree(tmp_path / "c", {"dev.yaml": "esphome:\n  includes: [pipe.h]\n"})
    os.mkfifo(cfg / "pipe.h")
    with pytest.raises(BundleError, match=r"pipe\.h is not a regular file"):
        write_config_bundle(cfg, "dev.yaml", tmp_path / "b.tar.gz")


def test_non_utf8_yaml(tmp_path: Path) -> None:
    cfg = make_tree(tmp_path / "c", {"dev.yaml": b"name: \xff\xfe\n"})
    with pytest.raises(BundleError, match=r"dev\.yaml cannot be read"):
        write_config_bundle(cfg, "dev.yaml", tmp_path / "b.tar.gz")


def test_deeply_nested_yaml(tmp_path: Path) -> None:
    cfg = make_tree(tmp_path / "c", {"dev.yaml": "a: " + "[" * 50_000 + "]" * 50_000 + "\n"})
    with pytest.raises(BundleError, match=r"dev\.yaml is nested too deeply"):
        write_config_bundle(cfg, "dev.yaml", tmp_path / "b.tar.gz")


def test_missing_config_folder_and_file(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="is not readable"):
        write_config_bundle(tmp_path / "nope", "dev.yaml", tmp_path / "b.tar.gz")
    with pytest.raises(BundleError, match=r"dev\.yaml cannot be read"):
        write_config_bundle(tmp_path, "dev.yaml", tmp_path / "b.tar.gz")


def test_yaml_file_size_cap(tmp_path: Path) -> None:
    cfg = make_tree(tmp_path / "c", {"dev.yaml": "#" * (config_scan.MAX_YAML_BYTES + 1)})
    with pytest.raises(BundleError, match=r"dev\.yaml is larger than 8388608 bytes"):
        write_config_bundle(cfg, "dev.yaml", tmp_path / "b.tar.gz")


def test_total_size_cap_counts_every_file(tmp_path: Path) -> None:
    cfg = make_tree(
        tmp_path / "c",
        {
            "dev.yaml": "font: [{file: a.ttf}, {file: b.ttf}]\n",
            "a.ttf": b"a" * 600,
            "b.ttf": b"b" * 600,
        },
    )
    with pytest.raises(BundleError, match="files exceed 1000 bytes"):
        write_config_bundle(cfg, "dev.yaml", tmp_path / "b.tar.gz", max_size=1000)


def test_compressed_size_cap(tmp_path: Path) -> None:
    """Incompressible data under the file cap still makes a bundle over it: refused."""
    cfg = make_tree(
        tmp_path / "c",
        {
            "dev.yaml": "font: [{file: a.ttf}]\n",
            "a.ttf": os.urandom(9_950),
        },
    )
    with pytest.raises(BundleError, match="the bundle is larger than 10000 bytes"):
        write_config_bundle(cfg, "dev.yaml", tmp_path / "b.tar.gz", max_size=10_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]


def test_file_count_cap(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(config_scan, "MAX_FILES", 2)
    cfg = make_tree(
        tmp_path / "c",
        {
            "dev.yaml": "a: !include a.yaml\nb: !include b.yaml\n",
            "a.yaml": "{}",
            "b.yaml": "{}",
        },
    )
    with pytest.raises(BundleError, match="more than 2 files"):
        write_config_bundle(cfg, "dev.yaml", tmp_path / "b.tar.gz")


def test_output_folder_missing(tmp_path: Path) -> None:
    cfg = make_tree(tmp_path / "c", {"dev.yaml": "{}\n"})
    with pytest.raises(BundleError, match="cannot create the bundle"):
        write_config_bundle(cfg, "dev.yaml", tmp_path / "missing" / "b.tar.gz")


def test_file_vanishing_while_writing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = make_tree(tmp_path / "c", {"dev.yaml": "font: [{file: a.ttf}]\n", "a.ttf": b"font"})
    real_scan = bundle_module.scan_config

    def scan_then_delete(*args: object, **kwargs: object) -> object:
        result = real_scan(*args, **kwargs)  # type: ignore[arg-type]
        (cfg / "a.ttf").unlink()
        return result

    monkeypatch.setattr(bundle_module, "scan_config", scan_then_delete)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(BundleError, match="cannot write the bundle") as caught:
        write_config_bundle(cfg, "dev.yaml", out_dir / "b.tar.gz")
    assert isinstance(caught.value.__cause__, FileNotFoundError)
    assert list(out_dir.iterdir()) == []


def test_capped_writer_counts_hashes_and_flushes() -> None:
    raw = io.BytesIO()
    writer = bundle_module._CappedHashingWriter(raw, limit=5)
    writer.write(b"abc")
    writer.flush()
    assert (raw.getvalue(), writer.size) == (b"abc", 3)
    assert writer.hexdigest() == hashlib.sha256(b"abc").hexdigest()
    with pytest.raises(BundleError, match="larger than 5 bytes"):
        writer.write(b"def")
    assert raw.getvalue() == b"abc"
