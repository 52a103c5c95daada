"""The kernel cache imports code, so it trusts nothing it finds on disk: the
file must hold exactly the generated text (checked by hash), bytecode beside
it is never used, temporary files have unpredictable names, and a cache that
others can write to is refused."""
import os
import sys

import pytest

from codegen.runtime import CacheError, _cached_module, cache_dir

TEXT = "VALUE = 41 + 1\n"


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    d = tmp_path / "cache"
    monkeypatch.setenv("ATTNC_CACHE", str(d))
    return d


def test_a_module_is_written_and_imported_from_its_text(cache):
    mod = _cached_module("k1", TEXT)
    assert mod.VALUE == 42 and (cache / "attnc_k1.py").read_text() == TEXT
    assert not [p for p in cache.iterdir() if p.suffix == ".tmp"]


def test_a_changed_file_is_replaced_not_imported(cache):
    _cached_module("k2", TEXT)
    (cache / "attnc_k2.py").write_text("import os; VALUE = 'planted'\n")
    assert _cached_module("k2", TEXT).VALUE == 42
    assert (cache / "attnc_k2.py").read_text() == TEXT


def test_planted_bytecode_runs_no_code(cache, tmp_path):
    _cached_module("k3", TEXT)
    marker = tmp_path / "ran"
    evil = f"open({str(marker)!r}, 'w').write('x')\nVALUE = 0\n"
    # compile the planted code as the bytecode of the cached file, as an attacker would
    import py_compile
    src = tmp_path / "evil.py"
    src.write_text(evil)
    pyc = cache / "__pycache__" / f"attnc_k3.{sys.implementation.cache_tag}.pyc"
    pyc.parent.mkdir()
    # an unchecked-hash pyc is used by Python's import system without looking at the source
    py_compile.compile(str(src), cfile=str(pyc), invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)
    sys.modules.pop("attnc_kernel_k3", None)
    assert _cached_module("k3", TEXT).VALUE == 42
    assert not marker.exists()


def test_a_symlink_planted_at_the_kernels_path_is_not_followed(cache, tmp_path):
    cache.mkdir(mode=0o700)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    (cache / "attnc_k4.py").symlink_to(victim)
    assert _cached_module("k4", TEXT).VALUE == 42
    assert victim.read_text() == "keep me"
    assert not (cache / "attnc_k4.py").is_symlink()


def test_a_cache_writable_by_others_is_refused(cache):
    cache.mkdir()
    os.chmod(cache, 0o777)
    with pytest.raises(CacheError, match="writable by others"):
        cache_dir()
