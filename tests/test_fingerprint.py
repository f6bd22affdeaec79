"""`padcore.sources.fingerprint`: what a source holds now, the key that makes KFP's cache answer preprocess only
for unchanged data. It must change exactly when the data preprocess would read changes."""

import os

import pytest

from padcore.errors import PadError
from padcore.sources import fingerprint


def digest(spec: str, as_of: str = "") -> str:
    return fingerprint(spec, as_of)["fingerprint"]


@pytest.fixture
def shop(tmp_path):
    folder = tmp_path / "shop"
    (folder / "interactions" / "date=2026-12-01").mkdir(parents=True)
    (folder / "items.csv").write_text("item,text\na,A\nb,B\n")
    (folder / "interactions" / "date=2026-12-01" / "part-0.csv").write_text("user,item,timestamp\nu,a,1\n")
    return folder


def test_unchanged_data_keeps_its_fingerprint_and_any_change_to_what_is_read_moves_it(shop):
    spec = f"files:{shop}"
    first = digest(spec)
    assert digest(spec) == first and fingerprint(spec)["files"] == 2
    (shop / "README.txt").write_text("not data")  # not read by the source
    (shop / "interactions" / "_SUCCESS").write_text("")
    assert digest(spec) == first
    part = shop / "interactions" / "date=2026-12-01" / "part-0.csv"
    part.write_text("user,item,timestamp\nu,a,1\nv,b,2\n")  # a grown log
    grown = digest(spec)
    assert grown != first
    os.utime(part, ns=(0, 0))  # same size, another time: rewritten, read again
    assert digest(spec) != grown


def test_a_later_partition_moves_the_fingerprint_unless_the_bound_leaves_it_out(shop):
    spec = f"files:{shop}"
    bounded, unbounded = digest(spec, "2026-12-01"), digest(spec)
    (shop / "interactions" / "date=2026-12-02").mkdir()
    (shop / "interactions" / "date=2026-12-02" / "part-0.csv").write_text("user,item,timestamp\nw,a,3\n")
    assert digest(spec, "2026-12-01") == bounded, "a partition after as_of is not read"
    assert digest(spec) != unbounded and digest(spec, "2026-12-02") != bounded
    assert digest(spec, "2026-12-01") != digest(spec), "the bound is part of what is read"


def test_files_on_gcs_are_named_by_their_generations(gcs):
    bucket = gcs.create_bucket("pad-fp")
    bucket.blob("shop/items.csv").upload_from_string("item,text\na,A\n")
    bucket.blob("shop/interactions.csv").upload_from_string("user,item,timestamp\nu,a,1\n")
    bucket.blob("shop/notes/x.txt").upload_from_string("not data")
    first = fingerprint("files:gs://pad-fp/shop")
    assert first["files"] == 2 and digest("files:gs://pad-fp/shop") == first["fingerprint"]
    bucket.blob("shop/interactions.csv").upload_from_string("user,item,timestamp\nu,a,1\n")  # same bytes, new object
    assert digest("files:gs://pad-fp/shop") != first["fingerprint"]


def test_public_releases_are_fixed_and_sources_are_checked():
    assert digest("prime_pantry") == digest("prime_pantry") != digest("mind:small")
    with pytest.raises(PadError, match="unknown source 'shop'"):
        fingerprint("shop")
    with pytest.raises(PadError, match="folder not found"):
        fingerprint("files:/nonexistent/shop")
    with pytest.raises(PadError, match="as_of 'soon'"):
        fingerprint("prime_pantry", "soon")
