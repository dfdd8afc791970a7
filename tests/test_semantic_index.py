"""The semantic index's catch-up: a lookup never reads a long backlog itself, and searches share the index.

A lookup adds its namespace's new records inline only when there are at most INLINE_CATCH_UP
(read-your-writes for the usual few); a longer backlog (a process started without its index
file, a burst from other replicas) is added by the index's background thread while lookups go on
searching what is indexed; a large saved index is loaded by that thread too. Measured in
benchmarks/README.md (cache_latency.py --catch-up); these tests check who does the work, never how
long it takes.

Long vectors are searched in a random projection and the neighbours found re-scored over their full
vectors: the similarities a lookup sees are the full vectors' cosines, before and after a reload.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from otel_margin.plugins.cache import index as index_module
from otel_margin.plugins.cache.index import INLINE_CATCH_UP, SEARCH_DIMS, Record, SemanticIndex, _Guard
from otel_margin.plugins.cache.journal import Journal
from otel_margin.plugins.cache.stores import FailOpen, MemoryStore

TENANT = '["customer", "acme"]'
NDIM = 8


def _journal_with(count: int, ndim: int = NDIM, seed: int = 3) -> tuple[Journal, np.ndarray]:
    journal = Journal(FailOpen(MemoryStore(64 * 1024 * 1024), "memory"))
    vectors = np.random.default_rng(seed).standard_normal((count, ndim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    for number, vector in enumerate(vectors):
        journal.append(TENANT, Record(f"entry-{number}", "shape", f"text {number}", time.time() + 3600).to_bytes(vector), 3600)
    return journal, vectors


def _adds_by_thread(monkeypatch) -> list[str]:
    """The names of the threads that add vectors, in order."""
    threads: list[str] = []
    add = SemanticIndex.add

    def counted(self, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return add(self, *args, **kwargs)

    monkeypatch.setattr(SemanticIndex, "add", counted)
    return threads


def _wait_for(condition, timeout_s: float = 60.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_a_few_new_records_are_added_by_the_lookup_itself(monkeypatch):
    threads = _adds_by_thread(monkeypatch)
    journal, vectors = _journal_with(INLINE_CATCH_UP)
    index = SemanticIndex(journal, NDIM)
    found = index.search(TENANT, vectors[-1])
    assert threads == [threading.current_thread().name] * INLINE_CATCH_UP  # read-your-writes
    assert found and found[0][1].entry_key == f"entry-{INLINE_CATCH_UP - 1}" and found[0][0] > 0.999


def test_a_long_backlog_is_left_to_the_background_thread_and_lookups_go_on(monkeypatch):
    threads = _adds_by_thread(monkeypatch)
    backlog = INLINE_CATCH_UP * 20 + 3
    journal, vectors = _journal_with(backlog)
    index = SemanticIndex(journal, NDIM)
    index.search(TENANT, vectors[0])
    assert threading.current_thread().name not in threads  # the lookup added nothing itself
    space = index._spaces[TENANT]
    assert _wait_for(lambda: space.position == backlog), "the background thread did not catch up"
    assert set(threads) == {"otel-margin-semantic-index"} and len(threads) == backlog
    found = index.search(TENANT, vectors[backlog - 1])
    assert found[0][1].entry_key == f"entry-{backlog - 1}"

    journal.append(TENANT, Record("late", "shape", "late", time.time() + 3600).to_bytes(vectors[0]), 3600)
    index.search(TENANT, vectors[0])  # and then a new record is the lookup's own again
    assert threads[-1] == threading.current_thread().name and space.position == backlog + 1
    index.close()


def test_the_background_thread_saves_a_changed_index(monkeypatch, tmp_path):
    monkeypatch.setattr(index_module, "INLINE_CATCH_UP", 0)  # everything through the thread
    journal, vectors = _journal_with(5)
    index = SemanticIndex(journal, NDIM, directory=str(tmp_path), save_every_s=0.05)
    index.search(TENANT, vectors[0])
    path = index.path(TENANT)
    assert _wait_for(lambda: path.exists() and not index._spaces[TENANT].dirty), "no save"
    index.close()
    reloaded = SemanticIndex(journal, NDIM, directory=str(tmp_path))
    assert reloaded._space(TENANT).position == 5 and len(reloaded._space(TENANT).index) == 5


def test_the_guard_lets_searches_share_and_lets_a_waiting_search_in_before_the_next_add():
    guard = _Guard()
    with guard.shared():
        with guard.shared():  # two searches (or a search and a save) at once
            assert not guard.acquire(timeout=0.01)  # an add waits for them
    assert guard.acquire(timeout=0.01)
    entered = threading.Event()

    def search():
        with guard.shared():
            entered.set()

    reader = threading.Thread(target=search, daemon=True)
    reader.start()
    assert not entered.wait(0.05)  # a search waits while a vector is added
    guard.release()
    assert entered.wait(5)
    reader.join()

    guard.acquire()
    waiting = threading.Thread(target=search, daemon=True)
    entered.clear()
    waiting.start()
    assert _wait_for(lambda: guard._waiting == 1, 5)
    guard.release()
    added = guard.acquire(timeout=0)
    try:
        assert entered.is_set() or not added  # the waiting search goes before the next add
    finally:
        if added:
            guard.release()
    waiting.join(5)


def test_a_closed_index_stops_its_thread():
    journal, vectors = _journal_with(INLINE_CATCH_UP + 1)
    index = SemanticIndex(journal, NDIM)
    index.search(TENANT, vectors[0])
    worker = index._worker
    assert worker is not None
    index.close()
    worker.join(10)
    assert not worker.is_alive()


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_the_index_loads_usearch_after_onnxruntime_so_the_embedder_can_still_load():
    # Importing onnxruntime once usearch is loaded is a segmentation fault (usearch 2.26, onnxruntime 1.32).
    run = _python("from otel_margin.plugins.cache.index import SemanticIndex\n"
                  "SemanticIndex(None, 8)._new_index()\n"
                  "from otel_margin.plugins.cache.embedder import MiniLMEmbedder\n"
                  "print(len(MiniLMEmbedder().embed('hello').vector))")
    assert (run.returncode, run.stdout.strip()) == (0, "384"), run.stderr[-2000:]


def test_an_app_that_imported_usearch_first_gets_a_clear_error_not_a_crash():
    run = _python("import usearch.index\n"
                  "from otel_margin.plugins.cache.embedder import EmbedderUnavailable, load_model\n"
                  "try:\n    load_model()\nexcept EmbedderUnavailable as error:\n    print(error)")
    assert run.returncode == 0, run.stderr[-2000:]
    assert "usearch was imported before onnxruntime" in run.stdout and "import onnxruntime first" in run.stdout


def test_an_expired_record_is_never_returned_and_leaves_the_index():
    journal, vectors = _journal_with(3)  # records that expire in an hour
    now = [time.time()]
    index = SemanticIndex(journal, NDIM, clock=lambda: now[0])
    assert [r.entry_key for _, r in index.search(TENANT, vectors[1])][0] == "entry-1"
    now[0] += 7200
    assert index.search(TENANT, vectors[1]) == []
    space = index._spaces[TENANT]
    assert (len(space.index), space.records) == (0, {})


def test_a_large_saved_index_is_loaded_by_the_thread_while_lookups_miss(monkeypatch, tmp_path):
    journal, vectors = _journal_with(5)
    saved = SemanticIndex(journal, NDIM, directory=str(tmp_path))
    saved.search(TENANT, vectors[0])
    saved.save_all()
    saved.close()
    monkeypatch.setattr(index_module, "LOAD_INLINE_BYTES", 0)  # every saved file is "large"
    loads = _adds_by_thread(monkeypatch)  # (a loaded index adds nothing: its vectors are in the file)
    restarted = SemanticIndex(journal, NDIM, directory=str(tmp_path))
    assert restarted.search(TENANT, vectors[2]) == []  # not loaded yet: a miss, not a wait
    space = restarted._spaces[TENANT]
    assert _wait_for(lambda: space.ready), "the background thread did not load the file"
    assert (space.position, len(space.index), loads, restarted.rebuilds) == (5, 5, [], 0)
    assert restarted.search(TENANT, vectors[2])[0][1].entry_key == "entry-2"
    restarted.close()


MODEL_NDIM = 384  # the built-in model's: searched in a projection to SEARCH_DIMS


def _near(vector: np.ndarray, cosine: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at ``cosine`` from ``vector`` (a paraphrase, as the cache sees one)."""
    noise = rng.standard_normal(vector.shape).astype(np.float32)
    noise -= (noise @ vector) * vector
    noise /= np.linalg.norm(noise)
    return (cosine * vector + np.sqrt(1 - cosine**2) * noise).astype(np.float32)


def _caught_up(journal: Journal, **options) -> SemanticIndex:
    """An index that has read all of the journal (here, not in its thread)."""
    index = SemanticIndex(journal, MODEL_NDIM, **options)
    space = index._space(TENANT)
    while index._catch_up(TENANT, space, inline=False):
        pass
    return index


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cosine=st.floats(0.86, 0.999), target=st.integers(0, 199))
def test_similarities_are_the_full_vectors_cosines_most_similar_first(seed, cosine, target):
    journal, vectors = _journal_with(200, MODEL_NDIM, seed)
    index = _caught_up(journal)
    assert index.projection is not None and index.projection.shape == (MODEL_NDIM, SEARCH_DIMS)
    query = _near(vectors[target], cosine, np.random.default_rng([seed, 1]))  # not the journal's stream
    found = index.search(TENANT, query)
    assert found and found[0][1].entry_key == f"entry-{target}"
    similarities = [similarity for similarity, _ in found]
    assert similarities == sorted(similarities, reverse=True)
    for similarity, record in found:  # float16 full vectors: within 1e-3 of the exact cosine
        exact = float(vectors[int(record.entry_key.split("-")[1])] @ query)
        assert abs(similarity - exact) < 1e-3, (record.entry_key, similarity, exact)


def test_a_reloaded_index_finds_and_scores_as_before(tmp_path):
    journal, vectors = _journal_with(50, MODEL_NDIM)
    queries = [_near(vectors[i], 0.9, np.random.default_rng([i, 1])) for i in range(0, 50, 7)]
    saved = _caught_up(journal, directory=str(tmp_path))
    before = [saved.search(TENANT, query) for query in queries]
    saved.save_all()
    restarted = SemanticIndex(journal, MODEL_NDIM, directory=str(tmp_path))
    after = [restarted.search(TENANT, query) for query in queries]
    assert restarted.rebuilds == 0 and after == before and all(after)


def test_a_saved_index_from_another_projection_is_rebuilt_from_the_store(monkeypatch, tmp_path, caplog):
    journal, vectors = _journal_with(20, MODEL_NDIM)
    _caught_up(journal, directory=str(tmp_path)).save_all()
    other = np.linalg.qr(np.random.default_rng(5).standard_normal((MODEL_NDIM, SEARCH_DIMS)))[0].astype(np.float32)
    monkeypatch.setattr(index_module, "_projection", lambda ndim: other)
    restarted = SemanticIndex(journal, MODEL_NDIM, directory=str(tmp_path))
    restarted.search(TENANT, vectors[4])  # the file is refused; the thread reads the store's records again
    assert restarted.rebuilds == 1 and any("another format, embedder" in r.getMessage() for r in caplog.records)
    assert _wait_for(lambda: restarted._spaces[TENANT].position == 20), "the background thread did not catch up"
    assert restarted.search(TENANT, vectors[4])[0][1].entry_key == "entry-4"
    restarted.close()
