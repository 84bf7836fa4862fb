"""A synthetic forum with planted signals, so tiny models can reproduce the paper's shapes on a CPU.

WorldPM finds three behaviours (arXiv 2505.10527 §3.2; docs/paper_constants.md): adversarial loss
falls as a power law for every size, objective loss improves mainly for the largest model
(emergent), subjective loss shows no scaling. Each is planted here as a signal of matching difficulty:

- **quality** (→ adversarial sets): the preferred reply has a higher count of "good" minus "bad"
  marker words. A bag-of-words signal every size learns steadily with data. With `quality_zipf` > 0
  the marker words have Zipfian frequencies, so rarer words keep being learned as data grows and the
  loss falls as a power law rather than all at once. In the adversarial eval sets the style cues
  point the wrong way: the *rejected* reply is the longer one and has markdown.
- **answer** (→ objective sets): the prompt names a key; the preferred reply holds the value that
  key maps to under a fixed random table (`n_keys` entries). Quality and style are balanced, so only
  a model that learns the key→value association across prompt and reply (attention + memory)
  scores it — the harder signal that needs capacity.
- **noise** (→ subjective sets): the label is a coin flip, independent of content. No size learns it.
- **style**: in training pairs the preferred reply is the longer one / the markdown one with
  probability `style_rate` (0.5 = no correlation), so the style analysis (Phi) has something to find.

All knobs are fields of `SynthConfig` (and flags of `wps data synth`).
"""

from __future__ import annotations

import itertools
import json
import math
import random
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..names import EVAL_SETS


@dataclass(frozen=True, kw_only=True)
class SynthConfig:
    pairs: int = 20000
    """Training pairs."""
    seed: int = 0
    eval_pairs_per_set: int = 128
    """Pairs in each of the 12 eval sets. 128, as the onset study measures the demo recipe (its BPE is
    trained on text that includes the eval pairs, so this number changes the token ids and with them
    which seeds learn the objective lookup)."""
    mix_quality: float = 0.5
    """Share of training pairs carrying the quality signal."""
    mix_answer: float = 0.4
    """Share carrying the key→value answer signal (the rest are coin-flip noise pairs)."""
    n_keys: int = 4
    """Entries in the key→value table: more = harder objective signal. At 4, tiny models learn it
    abruptly, at a point the seed sets within a range the LR, the step count and width set: with
    per-width LRs every size learns it by 8,192 pairs in about half the seeds; with one LR for every
    size the wider the model the sooner (the demo, LR 2.5e-4 and 512 steps: widths 24, 32, 96 in 0, 0, 7
    of 8 seeds; measured: bench/results/objective_onset.txt); at 8 keys (and 64) none of the demo sizes of
    2026-12-02 learned it by 8,192."""
    answer_form: str = "context"
    """How a reply gives its answer: `context` = the value alone, so the key must be looked up in the
    prompt (cross-attention); `fact` = the reply states `key value` side by side, a fact to memorise
    (objective sets as knowledge: more keys = more facts); `parity` = the prompt raises a random
    subset of `parity_flags` flag words and the preferred reply gives the right one of two verdict
    words, the `odd` one when an odd number of the world's `parity_k` secret flags are raised (a sparse parity:
    no single flag, and for k ≥ 2 no pair short of the whole secret set, says anything about the
    label, so it is found only by search over flag combinations, which width parallelises; Barak et al.
    2022, arXiv 2207.08799; Edelman et al. 2023, arXiv 2309.03800). `n_keys` is then unused.
    Measured on the demo recipe (bench/results/objective_onset.txt, levers 1-3): k = 2 of 8 flags is
    learned by no size by 8,192 pairs, the XOR of 2 flags only by the two small ones, and one secret flag
    of 8 by about as many seeds at every width from 16 to 128 (3, 2, 3 of 4; tiny-s 1 of 2), so parity does
    not order the sizes either and the demo keeps `context`."""
    answer_hops: int = 0
    """0 = the answer is a fixed key→value table learned from the corpus (the recipe above). k ≥ 1 =
    a compositional answer stated in the prompt: the prompt lists, in shuffled order, two chains of
    k `x to y` facts over fresh names (bound anew in every pair) and asks about the first chain's
    start; the preferred reply holds that chain's end, the other reply the distractor chain's end.
    Only a model that follows k dependent lookups in context tells them apart, which needs depth
    (each hop is one more attention step). `n_keys` is then unused; names come from `chain_names`.
    Measured on the demo recipe: at k = 1 and k = 2 no demo size (tiny-s included) learns it by
    8,192 pairs (bench/results/objective_onset.txt), so the demo keeps k = 0."""
    parity_flags: int = 16
    """Flag words a parity prompt draws from (answer_form parity): each is raised with probability 1/2."""
    parity_k: int = 2
    """Secret flags whose parity decides the verdict (answer_form parity; 1 ≤ k ≤ parity_flags)."""
    chain_names: int = 48
    """Pool of entity names the in-prompt chains draw from (answer_hops ≥ 1; needs ≥ 2·(hops+1))."""
    quality_words: int = 256
    """Size of each of the good and bad marker-word sets."""
    quality_zipf: float = 1.5
    """Zipf exponent of the marker words' frequencies (word i drawn ∝ i^-s); 0 = uniform. With many
    marker words and s > 1 the rarer words' valence is met only with more data, so the quality loss
    falls smoothly with data (the Zipfian learning-curve model of Hutter 2021, arXiv 2102.04074)
    instead of dropping at once when a handful of words is known. Demo default 1.5 over 256 words:
    adversarial loss of every demo size then fits a power law from 2^9 pairs; with 16 uniform words
    tiny-xs sat at chance to 2^10 and then dived (measured: README, what the demo shows)."""
    quality_margin: int = 2
    """Minimum good-minus-bad difference between preferred and other reply."""
    quality_flip: float = 0.0
    """P(a training quality pair's votes went to the worse reply): the texts of chosen and rejected are
    swapped, the vote counts kept. Forum votes are noisy, so a reward model trained on them stays unsure
    and its BT test loss far from 0; without noise the quality signal is separable and, once learned, the
    loss dives towards 0 as the reward margins grow. Eval sets stay clean (as curated test sets).
    Measured on the demo recipe (bench/results/objective_onset.txt, issue 20 levers 11 and 14): noise keeps
    the adversarial curves closer to a power law but delays the objective lookup at every size (at 0.2 no
    demo size learns it by 8,192 pairs), so the demo keeps 0."""
    style_rate: float = 0.55
    """P(preferred reply is the one given `long_extra_words` more words) and P(it is the markdown one)
    in training pairs. The demo default is a weak cue (0.55): stronger cues are learned before the
    quality signal and push adversarial loss up first (measured: README, "What the demo shows")."""
    lexicon: int = 800
    """Ordinary content words."""
    prompt_words: tuple[int, int] = (6, 20)
    """Content words in a prompt (min, max): sets the prompt's token length."""
    reply_words: tuple[int, int] = (6, 30)
    """Content words in a reply before markers and the long-reply extra (min, max)."""
    long_extra_words: tuple[int, int] = (4, 10)
    """Words added to the 'longer' reply of a pair."""
    questions_xml: int = 300
    """Questions in the small StackExchange-format Posts.xml."""
    vocab_size: int = 4096
    """BPE vocabulary (must fit the tiny catalogue shapes' 8192)."""

    def __post_init__(self) -> None:
        def bad(field_name: str, why: str) -> SynthConfigError:
            return SynthConfigError(
                f"{field_name} (--{field_name.replace('_', '-')}) {why}, got {getattr(self, field_name)!r}"
            )

        for name in ("pairs", "eval_pairs_per_set", "lexicon", "questions_xml", "vocab_size"):
            if getattr(self, name) <= 0:
                raise bad(name, "must be positive")
        for name in ("mix_quality", "mix_answer", "style_rate", "quality_flip"):
            if not 0 <= getattr(self, name) <= 1:
                raise bad(name, "must be within [0, 1]")
        if self.mix_quality + self.mix_answer > 1:
            raise SynthConfigError(
                f"mix_quality + mix_answer (--mix-quality, --mix-answer) must be ≤ 1, got "
                f"{self.mix_quality} + {self.mix_answer}"
            )
        if self.quality_words < 1:
            raise bad("quality_words", "must be ≥ 1")
        if self.quality_zipf < 0:
            raise bad("quality_zipf", "must be ≥ 0")
        if self.quality_margin < 0:
            raise bad("quality_margin", "must be ≥ 0")
        if self.n_keys < 2:
            raise bad("n_keys", "must be ≥ 2")
        if self.answer_hops < 0:
            raise bad("answer_hops", "must be ≥ 0")
        if self.answer_hops and self.chain_names < 2 * (self.answer_hops + 1):
            raise SynthConfigError(
                f"chain_names (--chain-names) must be ≥ 2·(answer_hops + 1) = "
                f"{2 * (self.answer_hops + 1)}, got {self.chain_names}"
            )
        if self.answer_form not in ("context", "fact", "parity"):
            raise bad("answer_form", "must be 'context', 'fact' or 'parity'")
        if self.parity_flags < 1:
            raise bad("parity_flags", "must be ≥ 1")
        if not 1 <= self.parity_k <= self.parity_flags:
            raise SynthConfigError(
                f"parity_k (--parity-k) must be within [1, parity_flags = {self.parity_flags}], got {self.parity_k}"
            )
        for name in ("prompt_words", "reply_words", "long_extra_words"):
            lo_hi = getattr(self, name)
            if len(lo_hi) != 2 or not 1 <= lo_hi[0] <= lo_hi[1]:
                raise bad(name, "must be two word counts LO HI with 1 ≤ LO ≤ HI")


class SynthConfigError(ValueError):
    """A SynthConfig knob out of range; names the field and its `wps data synth` flag."""


_CONS = "bdfgklmnprstvz"
_VOW = "aeiou"


def _words(rng: random.Random, n: int, syllables: tuple[int, int], taken: set[str]) -> list[str]:
    out: list[str] = []
    while len(out) < n:
        w = "".join(rng.choice(_CONS) + rng.choice(_VOW) for _ in range(rng.randint(*syllables)))
        if w not in taken:
            taken.add(w)
            out.append(w)
    return out


@dataclass
class Forum:
    """The fixed world behind one generated data set (lexicon, markers, key→value table)."""

    cfg: SynthConfig
    rng: random.Random
    content: list[str] = field(default_factory=list)
    good: list[str] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    values: list[str] = field(default_factory=list)
    answer_of: dict[str, str] = field(default_factory=dict)
    names: list[str] = field(default_factory=list)
    """Entity names of the in-prompt chains (answer_hops ≥ 1)."""
    flags: list[str] = field(default_factory=list)
    """Flag words of parity prompts (answer_form parity); the first `parity_k` are the secret ones."""
    verdicts: tuple[str, str] = ("", "")
    """(odd, even) verdict words of parity replies."""
    marker_cum: list[float] | None = None
    """Cumulative Zipf weights of the marker words (None = uniform)."""

    @classmethod
    def build(cls, cfg: SynthConfig) -> "Forum":
        rng = random.Random(cfg.seed)
        taken: set[str] = set()
        f = cls(cfg=cfg, rng=rng)
        f.content = _words(rng, cfg.lexicon, (1, 3), taken)
        f.good = _words(rng, cfg.quality_words, (3, 3), taken)
        f.bad = _words(rng, cfg.quality_words, (3, 3), taken)
        f.keys = _words(rng, cfg.n_keys, (2, 2), taken)
        f.values = _words(rng, cfg.n_keys, (2, 2), taken)
        perm = list(range(cfg.n_keys))
        rng.shuffle(perm)
        f.answer_of = {k: f.values[perm[i]] for i, k in enumerate(f.keys)}
        if cfg.answer_hops:  # drawn last, and only then: the hops-0 world is the same as before
            f.names = _words(rng, cfg.chain_names, (2, 2), taken)
        if cfg.answer_form == "parity":  # drawn last too: the other forms' worlds are unchanged
            f.flags = _words(rng, cfg.parity_flags, (2, 2), taken)
            odd, even = _words(rng, 2, (2, 2), taken)
            f.verdicts = (odd, even)
        if cfg.quality_zipf > 0:
            f.marker_cum = list(itertools.accumulate((i + 1) ** -cfg.quality_zipf for i in range(cfg.quality_words)))
        return f

    # -- pieces -------------------------------------------------------------------------------
    def _marker(self, words: list[str]) -> str:
        if self.marker_cum is None:
            return self.rng.choice(words)  # uniform (kept as is: same data as before for the same seed)
        return self.rng.choices(words, cum_weights=self.marker_cum)[0]

    def _filler(self, lo_hi: tuple[int, int]) -> list[str]:
        return [self.rng.choice(self.content) for _ in range(self.rng.randint(*lo_hi))]

    def prompt(self, key: str | None = None) -> str:
        words = self._filler(self.cfg.prompt_words)
        if key is not None:
            words.insert(self.rng.randint(0, len(words)), f"about {key}")
        return " ".join(words) + "?"

    def reply(self, *, good: int, bad: int, long: bool, markdown: bool, value: str | None = None) -> str:
        words = self._filler(self.cfg.reply_words)
        if long:
            words += self._filler(self.cfg.long_extra_words)
        extra = [self._marker(self.good) for _ in range(good)] + [self._marker(self.bad) for _ in range(bad)]
        if value is not None:
            extra.append(value)  # a whole "key value" statement when answer_form is fact
        for w in extra:
            words.insert(self.rng.randint(0, len(words)), w)
        if not markdown:
            return " ".join(words) + "."
        cut = max(1, len(words) // 3)
        head, body = words[:cut], words[cut:]
        lines = [f"## {' '.join(head)}"] + [f"- {' '.join(body[i : i + 5])}" for i in range(0, len(body), 5)]
        lines[1 if len(lines) > 1 else 0] = lines[1 if len(lines) > 1 else 0].replace("- ", "- **", 1) + "**"
        lines[-1] += "."  # both kinds end alike: the reward is read at the last token, where a different
        return "\n".join(lines)  # final token would hand a random-init model a markdown bias for free

    def chain_prompt(self) -> tuple[str, str, str]:
        """(prompt, right end, distractor end) of a k-hop in-prompt chain pair: two chains
        a0→…→ak and d0→…→dk over distinct fresh names, their 2k facts shuffled, the question about a0."""
        k = self.cfg.answer_hops
        picked = self.rng.sample(self.names, 2 * (k + 1))
        a, d = picked[: k + 1], picked[k + 1 :]
        facts = [f"{c[i]} to {c[i + 1]}" for c in (a, d) for i in range(k)]
        self.rng.shuffle(facts)
        return self.prompt(a[0]) + " notes: " + ", ".join(facts) + ".", a[-1], d[-1]

    def parity_prompt(self) -> tuple[str, str, str]:
        """(prompt, right verdict, wrong verdict) of a parity pair: each flag raised with p = 1/2."""
        raised = [w for w in self.flags if self.rng.random() < 0.5]
        odd = sum(w in raised for w in self.flags[: self.cfg.parity_k]) % 2 == 1
        words = self._filler(self.cfg.prompt_words)
        for w in raised:
            words.insert(self.rng.randint(0, len(words)), w)
        right, wrong = self.verdicts if odd else self.verdicts[::-1]
        return " ".join(words) + "?", right, wrong

    def _quality_counts(self) -> tuple[tuple[int, int], tuple[int, int]]:
        m = self.cfg.quality_margin
        gc, bc = self.rng.randint(1, 3), self.rng.randint(0, 1)
        gr, br = self.rng.randint(0, 1), self.rng.randint(1, 2)
        while (gc - bc) - (gr - br) < m:
            gc += 1
        return (gc, bc), (gr, br)

    # -- pairs ----------------------------------------------------------------------------------
    def pair(self, kind: str, *, style: str) -> dict:
        """kind: quality | answer | noise; style: train (correlated at style_rate), against
        (rejected is longer + markdown), balanced (coin flips)."""
        r = self.rng
        if style == "train":
            c_long = r.random() < self.cfg.style_rate
            c_md = r.random() < self.cfg.style_rate
        elif style == "against":
            c_long, c_md = False, False
        else:
            c_long, c_md = r.random() < 0.5, r.random() < 0.5
        r_md = (not c_md) if style != "balanced" else r.random() < 0.5
        if kind == "quality":
            (gc, bc), (gr, br) = self._quality_counts()
            prompt = self.prompt()
            chosen = self.reply(good=gc, bad=bc, long=c_long, markdown=c_md)
            rejected = self.reply(good=gr, bad=br, long=not c_long, markdown=r_md)
            cs, rs = gc - bc, gr - br
        elif kind == "answer" and (self.cfg.answer_hops or self.cfg.answer_form == "parity"):
            # the prompt states what decides the answer: a chain to follow (hops win), or flags to count
            prompt, right, wrong = self.chain_prompt() if self.cfg.answer_hops else self.parity_prompt()
            g, b = r.randint(0, 2), r.randint(0, 1)
            chosen = self.reply(good=g, bad=b, long=c_long, markdown=c_md, value=right)
            rejected = self.reply(good=g, bad=b, long=not c_long, markdown=r_md, value=wrong)
            cs, rs = 1, 0
        elif kind == "answer":
            key = r.choice(self.keys)
            wrong = r.choice([v for v in self.values if v != self.answer_of[key]])
            g, b = r.randint(0, 2), r.randint(0, 1)
            prompt = self.prompt(key)
            right = self.answer_of[key]
            if self.cfg.answer_form == "fact":
                right, wrong = f"{key} {right}", f"{key} {wrong}"
            chosen = self.reply(good=g, bad=b, long=c_long, markdown=c_md, value=right)
            rejected = self.reply(good=g, bad=b, long=not c_long, markdown=r_md, value=wrong)
            cs, rs = 1, 0
        elif kind == "noise":
            g, b = r.randint(0, 2), r.randint(0, 1)
            prompt = self.prompt()
            chosen = self.reply(good=g, bad=b, long=c_long, markdown=c_md)
            rejected = self.reply(good=g, bad=b, long=not c_long, markdown=r_md)
            cs, rs = 1, 0
        else:
            raise ValueError(f"unknown pair kind {kind!r}")
        return {
            "prompt": prompt,
            "chosen": chosen,
            "rejected": rejected,
            "chosen_score": cs,
            "rejected_score": rs,
            "kind": kind,
            "chosen_markdown": chosen.startswith("## "),
            "rejected_markdown": rejected.startswith("## "),
        }


EVAL_KIND = {
    "adversarial": ("quality", "against"),
    "objective": ("answer", "balanced"),
    "subjective": ("noise", "balanced"),
}


def generate(cfg: SynthConfig) -> tuple[list[dict], dict[str, list[dict]], Forum]:
    """Training pairs, the 12 eval sets (by the WorldPM names and categories), and the world."""
    f = Forum.build(cfg)
    train = []
    for i in range(cfg.pairs):
        u = f.rng.random()
        kind = "quality" if u < cfg.mix_quality else ("answer" if u < cfg.mix_quality + cfg.mix_answer else "noise")
        p = f.pair(kind, style="train")
        if kind == "quality" and cfg.quality_flip and f.rng.random() < cfg.quality_flip:  # no draw at 0: same world
            p.update(
                chosen=p["rejected"],
                rejected=p["chosen"],
                chosen_markdown=p["rejected_markdown"],
                rejected_markdown=p["chosen_markdown"],
            )
        p.update(question_id=i, site="synthetic.forum")
        train.append(p)
    evals = {}
    for name, cat in EVAL_SETS.items():
        kind, style = EVAL_KIND[cat]
        evals[name] = [
            {**f.pair(kind, style=style), "question_id": cfg.pairs + 10**6 * (j + 1)}
            for j in range(cfg.eval_pairs_per_set)
        ]
    return train, evals, f


def posts_xml(f: Forum, n_questions: int) -> str:
    """A small StackExchange-format Posts.xml from the same world (answers scored by quality)."""
    from xml.sax.saxutils import quoteattr

    r = f.rng
    rows, pid = [], 1
    for _ in range(n_questions):
        qid = pid
        pid += 1
        answers = []
        for _ in range(r.randint(1, 5)):
            g, b = r.randint(0, 3), r.randint(0, 2)
            score = 2 * (g - b) + r.randint(-1, 1)
            answers.append((pid, score, f.reply(good=g, bad=b, long=r.random() < 0.5, markdown=False)))
            pid += 1
        accepted = max(answers, key=lambda a: a[1])[0] if r.random() < 0.6 else None
        body = "<p>" + f.prompt() + "</p>"
        acc = f' AcceptedAnswerId="{accepted}"' if accepted else ""
        rows.append(
            f'  <row Id="{qid}" PostTypeId="1"{acc} CreationDate="2024-01-01T00:00:00.000" '
            f'Score="{r.randint(0, 9)}" Body={quoteattr(body)} Title={quoteattr(f.prompt()[:40])} '
            f'AnswerCount="{len(answers)}" />'
        )
        for aid, score, text in answers:
            rows.append(
                f'  <row Id="{aid}" PostTypeId="2" ParentId="{qid}" CreationDate="2024-01-02T00:00:00.000" '
                f'Score="{score}" Body={quoteattr("<p>" + text + "</p>")} />'
            )
    return '<?xml version="1.0" encoding="utf-8"?>\n<posts>\n' + "\n".join(rows) + "\n</posts>\n"


def write(cfg: SynthConfig, out: str | Path) -> dict:
    """Write train.parquet, evals/*.jsonl, tokenizer.json, stats.json, Posts.xml, README.md into `out`."""
    import pandas as pd

    from .io import write_jsonl, write_pairs
    from .tokenized import tokenized_stats
    from .tokenizer import prompt_text, reply_text, train_bpe

    out = Path(out)
    train, evals, world = generate(cfg)  # before any folder exists: a failure leaves nothing behind
    (out / "evals").mkdir(parents=True, exist_ok=True)
    write_pairs(pd.DataFrame(train), out / "train.parquet")
    for name, rows in evals.items():
        write_jsonl(rows, out / "evals" / f"{name}.jsonl")
    xml = posts_xml(world, cfg.questions_xml)
    tmp = out / "Posts.xml.tmp"
    tmp.write_text(xml)
    tmp.replace(out / "Posts.xml")
    corpus = [prompt_text(p["prompt"]) + reply_text(p["chosen"]) + reply_text(p["rejected"]) for p in train[:20000]] + [
        prompt_text(p["prompt"]) + reply_text(p["chosen"]) for rows in evals.values() for p in rows[:50]
    ]
    tok = train_bpe(corpus, out / "tokenizer.json", vocab_size=cfg.vocab_size)
    stats = tokenized_stats(train[:5000], tok)
    stats.update(
        {"pairs": cfg.pairs, "synth": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}}
    )
    tmp = out / "stats.json.tmp"
    tmp.write_text(json.dumps(stats, indent=1))
    tmp.replace(out / "stats.json")
    (out / "README.md").write_text(
        "# Synthetic forum (generated by `wps data synth`)\n\n"
        f"{cfg.pairs} training pairs; 12 eval sets of {cfg.eval_pairs_per_set} pairs; tokens per pair "
        f"{stats['tokens_per_pair']:.1f}.\n\nKnobs: `{json.dumps(stats['synth'])}`\n\n"
        "See worldpm_scaling/data/synth.py for what each signal plants.\n"
    )
    return stats


def entropy_bits(p: float) -> float:
    return 0.0 if p in (0.0, 1.0) else -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
