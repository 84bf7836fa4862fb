"""One-time tokenization (issue 14): `wps data tokenize SWEEP.yaml` builds the memory-mapped cache once;
a 2-rank job (2 gloo processes through the Trainer, tiny model) only maps it, and a rank's peak RSS
does not grow with the corpus; without the command, rank 0 builds while rank 1 waits; a build is
resumable and atomic."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import subprocess_env
from worldpm_scaling.track.server import free_port

pytestmark = [pytest.mark.integration]

REPO = Path(__file__).resolve().parents[2]
WORDS_PER_TEXT = 60

WORKER = textwrap.dedent("""
    import dataclasses, json, os, resource, sys
    import torch
    torch.set_num_threads(1)
    from worldpm_scaling.config import load_sweep
    from worldpm_scaling.plan import plan
    from worldpm_scaling.track import InMemoryTracker
    from worldpm_scaling.train import Trainer

    sweep, out = sys.argv[1], sys.argv[2]
    run = dataclasses.replace(plan(load_sweep(sweep)).runs[0], out_dir=out)
    tr = InMemoryTracker().start_cell(run.sweep, run.cell_id, name="tok")
    t = Trainer(run, tr, eval_sets=[], engine="torch", device="cpu")
    res = t.fit()
    with open(os.path.join(out, f"rank{t.rank}.json"), "w") as f:
        json.dump({"rank": t.rank, "world": t.world, "steps": res.steps, "status": res.status,
                   "pairs_in_shard": len(t._train_pairs),
                   "rss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}, f)
""")

MAPPER = textwrap.dedent("""
    import json, os, sys
    from worldpm_scaling.config import load_sweep
    from worldpm_scaling.data import open_train_pairs
    spec = load_sweep(sys.argv[1])
    rank = int(os.environ["RANK"])
    pairs = open_train_pairs(spec.data, seed=0, rank=rank, world=2, ctx_len=256)
    print(json.dumps({"rank": rank, "pid": os.getpid(), "first": [int(x) for x in pairs[0].chosen[:8]],
                      "n": len(pairs)}))
""")


def _corpus(folder: Path, pairs: int, tokenizer: Path) -> Path:
    """Random-word pairs (3 × 60 words each) and a sweep that trains a tiny model on 128 of them."""
    import pandas as pd

    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(1500)])

    def texts(n):
        idx = rng.integers(0, len(vocab), (n, WORDS_PER_TEXT))
        return [" ".join(row) for row in vocab[idx]]

    pd.DataFrame({"prompt": texts(pairs), "chosen": texts(pairs), "rejected": texts(pairs)}).to_parquet(
        folder / "train.parquet"
    )
    sweep = folder / "sweep.yaml"
    sweep.write_text(
        textwrap.dedent(f"""
        name: tok
        models: [{{name: tk, hidden: 32, layers: 2, heads: 2, kv_heads: 1, intermediate: 64, vocab: 2048,
                  tie_embeddings: true, max_positions: 512, rope_theta: 10000.0}}]
        init: random
        data: {{source: {folder / "train.parquet"}, tokenizer: {tokenizer}, pairs: 128, tokens_per_pair: 512}}
        milestones: {{pairs: [128]}}
        train: {{lr: 1.0e-3, warmup_frac: 0.0, ctx_len: 256, global_batch_pairs: 32, micro_batch_pairs: 16,
                precision: fp32, collation: packed, zero_stage: 0, checkpoint_every_steps: null,
                checkpoint_every_minutes: null}}
        eval: {{sets: [helpsteer2], dir: {folder / "evals"}}}  # never read: these tests tokenize and read pairs
        tracking: {{backend: memory}}
        cluster: {{executor: local, gpu_type: cpu, mem_gb_per_task: 8}}
        out_dir: {folder / "out"}
    """)
    )
    return sweep


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    from worldpm_scaling.data import train_bpe

    rng = np.random.default_rng(1)
    out = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    train_bpe((" ".join(f"w{i}" for i in rng.integers(0, 1500, 200)) for _ in range(300)), out, vocab_size=2048)
    return out


def _builds(source_dir: Path) -> list[dict]:
    log = source_dir / ".tokcache" / "builds.log"
    return [json.loads(x) for x in log.read_text().splitlines()] if log.is_file() else []


def _two_ranks(script: str, *args: str) -> list[subprocess.Popen]:
    port = str(free_port())
    procs = []
    for rank in (0, 1):
        env = subprocess_env(
            RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=port
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", script, *args],
                env=env,
                cwd=REPO,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return procs


def _wait(procs) -> list[str]:
    outs = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
        outs.append(out)
    return outs


def _tokenize(sweep: Path) -> subprocess.CompletedProcess:
    r = subprocess.run(
        [sys.executable, "-m", "worldpm_scaling", "data", "tokenize", str(sweep)],
        cwd=REPO,
        env=subprocess_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_tokenize_once_then_two_ranks_map_it(tmp_path, tokenizer):
    peaks = {}
    for name, pairs in (("small", 1000), ("large", 4000)):  # the large corpus is 4× the small one
        sweep = _corpus(tmp_path / name, pairs, tokenizer)
        r = _tokenize(sweep)
        assert "tokenized in" in r.stdout and f"pairs {pairs:,}" in r.stdout
        (build,) = _builds(tmp_path / name)
        assert build["pairs"] == pairs
        assert "cache already built" in _tokenize(sweep).stdout  # a second run reuses it
        out = tmp_path / name / "job"
        out.mkdir()
        _wait(_two_ranks(WORKER, str(sweep), str(out)))
        ranks = [json.loads((out / f"rank{i}.json").read_text()) for i in (0, 1)]
        assert [(x["world"], x["status"], x["steps"]) for x in ranks] == [(2, "FINISHED", 4)] * 2
        assert [x["pairs_in_shard"] for x in ranks] == [64, 64]
        assert len(_builds(tmp_path / name)) == 1  # the job tokenized nothing: it mapped the cache
        peaks[name] = [x["rss_kib"] for x in ranks]
    meta = json.loads(next((tmp_path / "large" / ".tokcache").glob("*/meta.json")).read_text())
    assert meta["tokens"] > 4000 * 3 * WORDS_PER_TEXT  # ≥ 720k tokens
    for small, large in zip(peaks["small"], peaks["large"]):
        assert large < 1.10 * small, peaks


def test_without_the_command_rank0_builds_and_rank1_waits(tmp_path, tokenizer):
    sweep = _corpus(tmp_path / "c", 600, tokenizer)
    procs = _two_ranks(MAPPER, str(sweep))
    outs = [json.loads(o.strip().splitlines()[-1]) for o in _wait(procs)]
    (build,) = _builds(tmp_path / "c")
    assert build["pid"] == outs[0]["pid"] == procs[0].pid  # rank 0 tokenized, rank 1 only mapped
    assert [o["n"] for o in outs] == [300, 300] and outs[0]["first"] != outs[1]["first"]


def test_build_is_resumable_and_atomic(tmp_path, tokenizer):
    from worldpm_scaling.data import build_cache, cache_folder, load_tokenizer

    tok = load_tokenizer(tokenizer)
    sweep = _corpus(tmp_path / "r", 500, tokenizer)
    src = tmp_path / "r" / "train.parquet"
    seen = []

    def crash(done, total):
        seen.append((done, total))
        if done >= 256:
            raise KeyboardInterrupt  # the user's Ctrl-C (or a kill) after two chunks

    with pytest.raises(KeyboardInterrupt):
        build_cache(src, tok, chunk_pairs=128, batch=64, progress=crash)
    folder = cache_folder(src, tok)
    assert not folder.exists()  # nothing half-written where a job would look
    assert len(list((folder.parent / f".build-{folder.name}").glob("chunk_*.npz"))) == 2
    resumed = []
    assert build_cache(src, tok, chunk_pairs=128, batch=64, progress=lambda d, t: resumed.append(d)) == folder
    assert resumed[0] == 256 and resumed[-1] == 500  # picked up after the two finished chunks
    fresh_src = tmp_path / "fresh" / "train.parquet"
    fresh_src.parent.mkdir()
    fresh_src.write_bytes(src.read_bytes())
    fresh = build_cache(fresh_src, tok, chunk_pairs=10_000)
    for name in ("tokens.npy", "spans.npy", "flags.npy"):
        assert np.array_equal(np.load(folder / name), np.load(fresh / name)), name
    assert json.loads((folder / "meta.json").read_text())["pairs"] == 500
    assert len(_builds(tmp_path / "r")) == 1 and sweep.is_file()


def test_reading_pairs_keeps_the_cache_out_of_a_ranks_memory(tmp_path):
    """A 100 MB cache (written directly, no tokenizer needed): reading 256 random pairs must not make
    the file resident in this process (a memory map did: 86 MB of a 97 MB cache after 128 pairs)."""
    from worldpm_scaling.data.tokenized import TokenizedPairs

    n, per = 20_000, 1250  # 25M int32 ids
    folder = tmp_path / "cache"
    folder.mkdir()
    np.save(folder / "tokens.npy", np.arange(n * per, dtype=np.int32) % 50_000)
    starts = np.arange(n, dtype=np.int64) * per
    spans = np.stack([starts, np.full(n, 250), starts + 250, np.full(n, 500), starts + 750, np.full(n, 500)], 1)
    np.save(folder / "spans.npy", spans)
    np.save(folder / "flags.npy", np.zeros((n, 2), bool))

    def rss_kib() -> int:
        return int(next(x for x in open("/proc/self/status") if x.startswith("VmRSS")).split()[1])

    before = rss_kib()
    pairs = TokenizedPairs(folder, seed=0, max_pairs=256, ctx_len=2048)
    got = [pairs[i] for i in range(len(pairs))]
    total = sum(int(g.prompt.sum()) + int(g.chosen.sum()) + int(g.rejected.sum()) for g in got)  # read every id
    grown = rss_kib() - before
    k = int(pairs.order[0])
    assert np.array_equal(got[0].chosen, (np.arange(500) + k * per + 250) % 50_000)
    assert total > 0 and len(got) == 256 and grown < 8 * 1024, (
        f"RSS grew {grown} KiB reading 256 pairs of a 100 MB cache"
    )
