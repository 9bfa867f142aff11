"""Learning BPE merges from word counts: the incremental pair-count algorithm.

:func:`learn_merges` is the engine behind :meth:`fnn.text.BPETokenizer.train`. It works on
symbol ids (the 256 byte symbols first), not strings, and on *unique* words: the corpus is
pre-tokenised and counted once, so a word seen 10,000 times is one entry with frequency
10,000.

The algorithm (Sennrich et al.'s BPE with the bookkeeping of Hugging Face ``tokenizers``):

1. Count every adjacent symbol pair over all words, weighted by word frequency, and remember
   for each pair the words it occurs in (``where[pair]``, a set of word indices).
2. Keep the pair counts in a heap ordered by ``(-count, pair)``. Entries are *upper bounds*:
   when a pair's count drops, its entry is left in place; when it is popped with a stale
   count it is pushed back with the true one. Counts only ever grow for pairs that contain
   the newly made symbol, and exactly those are pushed after each merge. So the first entry
   popped whose count is current is the true best pair.
3. Merge the best pair: visit only the words in ``where[pair]``; in each, replace the pair's
   occurrences left to right (``a a a`` with the pair ``(a, a)`` becomes ``aa a``), subtract
   the word's old pair counts and add its new ones. Every other word is untouched.

Tie-breaking is deterministic and documented: the pair with the highest count wins; among
equal counts, the smallest ``(left id, right id)``. That is Hugging Face ``BpeTrainer``'s rule,
and because both number the byte symbols in the same relative order (the code-point order of
GPT-2's printable byte characters) and new symbols in creation order, the two trainers choose
the same merges on the same words (the benchmark checks this on the Shakespeare corpus).
Training stops when the vocabulary reaches its size, when no pair is left, or when the best
count is below ``min_frequency``. As in ``tokenizers``, a merge whose result spells a symbol
that already exists (``"ab" + "c"`` after ``"a" + "bc"``) reuses that symbol's id and adds a
merge but no new symbol.

>>> words = {(0, 1, 2): 5, (0, 1): 3}              # "abc" x5, "ab" x3 (ids of a, b, c)
>>> symbols = [b"a", b"b", b"c"]
>>> learn_merges(words, symbols, max_symbols=5, min_frequency=1)
[(0, 1), (3, 2)]
>>> symbols
[b'a', b'b', b'c', b'ab', b'abc']
"""
from __future__ import annotations

import heapq
from collections import defaultdict

__all__ = ["learn_merges", "merge_word"]


def merge_word(word, left, right, new):
    """``word`` (a sequence of symbol ids) with each ``(left, right)`` made ``new``, left to right.

    Returns None when the pair does not occur (the caller then has nothing to update).
    """
    n = len(word)
    i = 0
    out = None
    while i < n - 1:
        if word[i] == left and word[i + 1] == right:
            if out is None:
                out = list(word[:i])
            out.append(new)
            i += 2
        else:
            if out is not None:
                out.append(word[i])
            i += 1
    if out is None:
        return None
    if i == n - 1:
        out.append(word[i])
    return out


def learn_merges(word_counts, symbols, max_symbols, min_frequency=2):
    """Learn BPE merges from ``word_counts``; append the new symbols to ``symbols`` in place.

    Args:
      word_counts: dict from a word (tuple of symbol ids) to its frequency (int > 0).
      symbols: list of ``bytes``, the spelling of each symbol id; new symbols are appended.
      max_symbols: stop once ``len(symbols)`` reaches this.
      min_frequency: stop when the best pair occurs fewer times than this.

    Returns:
      the merges in the order learned, as ``(left id, right id)`` pairs; merge ``k`` has rank ``k``.
    """
    words = [list(w) for w in word_counts]
    freqs = list(word_counts.values())
    pair_counts = defaultdict(int)
    where = defaultdict(set)
    for index, (word, freq) in enumerate(zip(words, freqs)):
        for pair in zip(word, word[1:]):
            pair_counts[pair] += freq
            where[pair].add(index)
    heap = [(-count, pair) for pair, count in pair_counts.items()]
    heapq.heapify(heap)
    symbol_id = {s: i for i, s in enumerate(symbols)}
    merges = []
    while len(symbols) < max_symbols and heap:
        neg_count, pair = heapq.heappop(heap)
        count = pair_counts.get(pair, 0)
        if count != -neg_count:  # a stale upper bound: push the true count back
            if count > 0:
                heapq.heappush(heap, (-count, pair))
            continue
        if count < min_frequency:
            break
        left, right = pair
        spelling = symbols[left] + symbols[right]
        new = symbol_id.get(spelling)
        if new is None:
            new = symbol_id[spelling] = len(symbols)
            symbols.append(spelling)
        merges.append(pair)
        grown = set()  # pairs holding `new` whose count grew: they need fresh heap entries
        for index in where.pop(pair):
            word = words[index]
            merged = merge_word(word, left, right, new)
            if merged is None:  # where[] is a superset: the pair left this word earlier
                continue
            freq = freqs[index]
            for p in zip(word, word[1:]):
                pair_counts[p] -= freq
            for p in zip(merged, merged[1:]):
                pair_counts[p] += freq
                if new in p:
                    where[p].add(index)
                    grown.add(p)
            words[index] = merged
        pair_counts.pop(pair, None)
        for p in grown:
            if pair_counts[p] > 0:
                heapq.heappush(heap, (-pair_counts[p], p))
    return merges
