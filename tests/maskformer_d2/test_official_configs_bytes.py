"""The official model-zoo YAMLs under configs/mask2former and configs/maskformer stay byte for byte
what configs/OFFICIAL_SOURCES.md records: same sha256, every YAML listed, upstream path = local path."""
import hashlib
import re

import pytest
from tests.helpers.paths import REPO as REPOSITORY

REPO = REPOSITORY
MANIFEST = REPO / "configs" / "OFFICIAL_SOURCES.md"
FOLDERS = {"mask2former": "facebookresearch/Mask2Former", "maskformer": "facebookresearch/MaskFormer"}
# | `configs/<family>/<rel>` | <upstream repo> | `<upstream path>` | <repo@commit> | <check> | `<sha256>` |
ROW = re.compile(
    r"^\| `(?P<file>configs/[^`]+)` \| (?P<repo>[\w.-]+/[\w.-]+) \| `(?P<upstream>[^`]+)` \| "
    r"(?P<source>[\w.-]+/[\w.-]+@[0-9a-f]{40}) \| (?P<check>[^|]+) \| `(?P<sha>[0-9a-f]{64})` \|$")


def _rows():
    """Manifest table rows as dicts; a line that starts like a row but does not parse is an error."""
    rows = []
    for n, line in enumerate(MANIFEST.read_text(encoding="utf-8").splitlines(), 1):
        if not line.startswith("| `configs/"):
            continue
        m = ROW.match(line)
        assert m, f"{MANIFEST.name}:{n}: malformed row: {line!r}"
        rows.append(m.groupdict())
    return rows


ROWS = _rows()


def test_manifest_lists_exactly_the_official_yamls():
    listed = [r["file"] for r in ROWS]
    assert len(listed) == len(set(listed)), "a file is listed twice in OFFICIAL_SOURCES.md"
    on_disk = {p.relative_to(REPO).as_posix() for folder in FOLDERS
               for p in (REPO / "configs" / folder).rglob("*.yaml")}
    assert on_disk, "no YAML found under configs/mask2former or configs/maskformer"
    missing, stale = sorted(on_disk - set(listed)), sorted(set(listed) - on_disk)
    assert not missing, f"YAMLs not in configs/OFFICIAL_SOURCES.md (add the official file and its row): {missing}"
    assert not stale, f"rows in configs/OFFICIAL_SOURCES.md without a file: {stale}"


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r["file"][len("configs/"):])
def test_official_yaml_bytes_match_manifest(row):
    folder, rel = row["file"][len("configs/"):].split("/", 1)
    assert FOLDERS.get(folder) == row["repo"], f"{row['file']}: upstream repo {row['repo']} is not {FOLDERS.get(folder)}"
    assert row["upstream"] == f"configs/{rel}", f"{row['file']}: upstream path {row['upstream']} is not the same relative path"
    digest = hashlib.sha256((REPO / row["file"]).read_bytes()).hexdigest()
    assert digest == row["sha"], (
        f"{row['file']} is no longer the official file recorded in configs/OFFICIAL_SOURCES.md "
        f"(sha256 {digest}, recorded {row['sha']}). Official configs are not edited: restore the "
        f"file with `git checkout -- {row['file']}`; put project changes in a config of our own.")


def test_same_as_rows_name_an_identical_listed_sibling():
    """A `same-as <path>` row claims identity with another official file of the same repo: check it."""
    by_upstream = {(r["repo"], r["upstream"]): r for r in ROWS}
    same_as = [r for r in ROWS if r["check"].startswith("same-as")]
    for r in same_as:
        sibling = re.fullmatch(r"same-as `([^`]+)`", r["check"].strip())
        assert sibling, f"{r['file']}: malformed check {r['check']!r}"
        target = by_upstream.get((r["repo"], sibling.group(1)))
        assert target is not None and target["check"].strip() == "index", f"{r['file']}: sibling {sibling.group(1)} is not an index row"
        assert target["sha"] == r["sha"], f"{r['file']} differs from its official sibling {sibling.group(1)}"
