"""Caption metrics from their papers' definitions: BLEU (Papineni 2002), ROUGE-L (Lin 2004),
CIDEr-D (Vedantam 2015), with the choices of the COCO caption evaluation code.

* Tokens: lower-cased runs of letters/digits (``\\w+``); punctuation is dropped, as the
  COCO PTB tokenizer step does (so "it's" -> "it", "s").
* BLEU-n: corpus level, clipped n-gram precision against the max count over references,
  brevity penalty with the reference length closest to each hypothesis (ties: the shorter),
  summed over the corpus. Unsmoothed: a corpus with no matching 4-gram scores 0 (COCO's code
  adds 1e-15/1e-9 and gives ~1e-5 instead). Per-sample values use the same formula on one sample.
* ROUGE-L: per sample, LCS precision and recall each maximised over the references,
  F = (1 + β²) P R / (R + β² P) with β = 1.2; the corpus score is the mean.
* CIDEr-D: n = 1..4 TF-IDF vectors with document frequencies counted over the references
  of the evaluated corpus (so the score depends on the whole set), hypothesis counts clipped
  by the reference counts, a Gaussian length penalty exp(-(l_h - l_r)² / (2 σ²)) with σ = 6,
  mean over n and references, x 10; the corpus score is the mean over samples.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from typing import Any

__all__ = ["bleu", "caption_metrics", "cider_d", "rouge_l", "tokenize"]

_WORD = re.compile(r"\w+")


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens, punctuation dropped."""
    return _WORD.findall(str(text).lower())


def _ngrams(tokens: list[str], n: int) -> Counter[tuple[str, ...]]:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def _check(hyps: Sequence[Any], refs: Sequence[Sequence[Any]]) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"got {len(hyps)} captions for {len(refs)} reference lists")
    for i, r in enumerate(refs):
        if isinstance(r, str) or len(r) == 0:
            raise ValueError(
                f"sample {i}: references must be a non-empty list of strings, got {r!r}"
            )


def _bleu_stats(
    hyp: list[str], refs: list[list[str]], max_n: int
) -> tuple[list[int], list[int], int, int]:
    correct, total = [], []
    for n in range(1, max_n + 1):
        h = _ngrams(hyp, n)
        best: Counter[tuple[str, ...]] = Counter()
        for r in refs:
            best |= _ngrams(r, n)  # element-wise max over references
        correct.append(sum(min(c, best[g]) for g, c in h.items()))
        total.append(max(len(hyp) - n + 1, 0))
    ref_len = min((len(r) for r in refs), key=lambda x: (abs(x - len(hyp)), x))
    return correct, total, len(hyp), ref_len


def _bleu_from(correct: list[int], total: list[int], hyp_len: int, ref_len: int) -> list[float]:
    if hyp_len == 0:
        return [0.0] * len(correct)
    bp = 1.0 if hyp_len > ref_len else math.exp(1.0 - ref_len / hyp_len)
    scores, log_sum = [], 0.0
    for k, (c, t) in enumerate(zip(correct, total, strict=True)):
        if c == 0 or t == 0:
            scores.extend([0.0] * (len(correct) - k))
            break
        log_sum += math.log(c / t)
        scores.append(bp * math.exp(log_sum / (k + 1)))
    return scores


def bleu(hyps: Sequence[str], refs: Sequence[Sequence[str]], max_n: int = 4) -> dict[str, Any]:
    """Corpus BLEU-1..``max_n`` (``bleu`` = BLEU-``max_n``) and per-sample sentence BLEU."""
    _check(hyps, refs)
    agg_c, agg_t = [0] * max_n, [0] * max_n
    agg_h = agg_r = 0
    per_sample = []
    for h, rs in zip(hyps, refs, strict=True):
        c, t, hl, rl = _bleu_stats(tokenize(h), [tokenize(r) for r in rs], max_n)
        agg_c = [a + b for a, b in zip(agg_c, c, strict=True)]
        agg_t = [a + b for a, b in zip(agg_t, t, strict=True)]
        agg_h += hl
        agg_r += rl
        per_sample.append(_bleu_from(c, t, hl, rl)[-1])
    scores = _bleu_from(agg_c, agg_t, agg_h, agg_r)
    return {"bleu": scores[-1], "bleu_n": scores, "per_sample": per_sample}


def _lcs(a: list[str], b: list[str]) -> int:
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b):
            cur.append(prev[j] + 1 if x == y else max(prev[j + 1], cur[j]))
        prev = cur
    return prev[-1]


def rouge_l(
    hyps: Sequence[str], refs: Sequence[Sequence[str]], beta: float = 1.2
) -> dict[str, Any]:
    """Mean ROUGE-L F-measure (β = 1.2) and per-sample values."""
    _check(hyps, refs)
    per_sample = []
    for h, rs in zip(hyps, refs, strict=True):
        ht = tokenize(h)
        p_max = r_max = 0.0
        for r in rs:
            rt = tokenize(r)
            lcs = _lcs(ht, rt)
            if ht:
                p_max = max(p_max, lcs / len(ht))
            if rt:
                r_max = max(r_max, lcs / len(rt))
        score = (
            (1 + beta**2) * p_max * r_max / (r_max + beta**2 * p_max)
            if p_max > 0 and r_max > 0
            else 0.0
        )
        per_sample.append(score)
    return {
        "rouge_l": sum(per_sample) / len(per_sample) if per_sample else 0.0,
        "per_sample": per_sample,
    }


def cider_d(
    hyps: Sequence[str], refs: Sequence[Sequence[str]], sigma: float = 6.0, max_n: int = 4
) -> dict[str, Any]:
    """Corpus CIDEr-D (document frequencies from these references) and per-sample values."""
    _check(hyps, refs)
    ref_toks = [[tokenize(r) for r in rs] for rs in refs]
    df: Counter[tuple[str, ...]] = Counter()
    for rs in ref_toks:
        df.update({g for r in rs for n in range(1, max_n + 1) for g in _ngrams(r, n)})
    log_n_docs = math.log(float(len(refs))) if refs else 0.0

    def vec(tokens: list[str]) -> tuple[list[dict[tuple[str, ...], float]], list[float]]:
        vs, norms = [], []
        for n in range(1, max_n + 1):
            v = {
                g: tf * (log_n_docs - math.log(max(1.0, df[g])))
                for g, tf in _ngrams(tokens, n).items()
            }
            vs.append(v)
            norms.append(math.sqrt(sum(x * x for x in v.values())))
        return vs, norms

    per_sample = []
    for h, rs in zip(hyps, ref_toks, strict=True):
        ht = tokenize(h)
        hv, hn = vec(ht)
        total = 0.0
        for rt in rs:
            rv, rn = vec(rt)
            penalty = math.exp(-((len(ht) - len(rt)) ** 2) / (2 * sigma**2))
            sims = []
            for n in range(max_n):
                dot = sum(min(x, rv[n].get(g, 0.0)) * rv[n].get(g, 0.0) for g, x in hv[n].items())
                sims.append(dot / (hn[n] * rn[n]) * penalty if hn[n] and rn[n] else 0.0)
            total += sum(sims) / max_n
        per_sample.append(total / len(rs) * 10.0)
    return {
        "cider": sum(per_sample) / len(per_sample) if per_sample else 0.0,
        "per_sample": per_sample,
    }


def caption_metrics(hyps: Sequence[str], refs: Sequence[Sequence[str]]) -> dict[str, Any]:
    """BLEU-4, ROUGE-L and CIDEr(-D) of captions against their reference lists."""
    b, r, c = bleu(hyps, refs), rouge_l(hyps, refs), cider_d(hyps, refs)
    per_sample = [
        {
            "index": i,
            "bleu4": b["per_sample"][i],
            "rouge_l": r["per_sample"][i],
            "cider": c["per_sample"][i],
        }
        for i in range(len(hyps))
    ]
    return {
        "bleu4": b["bleu"],
        "bleu_n": b["bleu_n"],
        "rouge_l": r["rouge_l"],
        "cider": c["cider"],
        "n": len(hyps),
        "per_sample": per_sample,
    }
