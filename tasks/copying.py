"""Copying and n-gram lookup (Jelassi, Brandfonbrener, Kakade, Malach 2024, *Repeat After Me:
Transformers are Better than State Space Models at Copying*, arXiv 2402.01032; reference
sjelassi/transformers_ssm_copy `synthetic_exps/data_utils.py`).

1. Vocabulary: letters 0..A-1 (A = vocab_size - 4, at most 26), `$` = A, `|` = A+1, `.` (EOS) = A+2,
   `*` (pad) = A+3.
2. An example: s is n uniform letters, n uniform on {min_len..max_len}.
   copy: `$ s | s .`; the answer is the second s and EOS.
   prefix_lookup: `$ g | s | a .`; suffix_lookup: `$ s | g a .`: g is an n-gram of s of
   `ngram_len` letters that occurs exactly once in s (s is redrawn otherwise) and a is the
   `answer_len` letters that follow it in s; the answer is a and EOS.
3. Labels (teacher-forced): the token before each answer token is labelled with it.
4. Test split: one example per row, right-padded with `*` to seq_len. Train split with `pack_train`
   (reference): rows of seq_len tokens packed with consecutive examples; the example cut by the
   row's end is unlabelled.

Choices stated explicitly (TASKS.md §7): teacher-forced evaluation (free-running generation is
the harness's business); the eval context must hold one example (2*max_len+3 tokens for copy), so
eval slices at long n raise seq_len (the reference reuses the training context and fails);
string accuracy is the harness's sequence-level metric over these labels (EOS included here,
the reference excludes it). Paper settings: A=10, train context 220 with n in 8..50, eval n up to 200.

Example, `Copying(vocab_size=7, seq_len=12, min_len=2, max_len=4).generate(1, seed=0)`::

    Inputs: 3 0 2 0 1 4 0 2 0 1 5 6
    Labels: . . . . . 0 2 0 1 5 . .
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

from ._util import in_chunks
from .base import IGNORE, Batch, Split, Task, check, generator


@dataclass(frozen=True, kw_only=True)
class Copying(Task):
    name = "copying"
    metric = "micro"

    vocab_size: int = 14
    seq_len: int = 220
    min_len: int = 8
    max_len: int = 50
    mode: Literal["copy", "prefix_lookup", "suffix_lookup"] = "copy"
    ngram_len: int = 3
    answer_len: int = 1
    pack_train: bool = True

    def __post_init__(self) -> None:
        A = self.vocab_size - 4
        check(1 <= A <= 26,
              f"copying: vocab_size must be in [5, 30] (1..26 letters + 4 specials), got {self.vocab_size}")
        check(self.mode in ("copy", "prefix_lookup", "suffix_lookup"),
              f"copying: mode must be 'copy', 'prefix_lookup' or 'suffix_lookup', got {self.mode!r}")
        check(1 <= self.min_len <= self.max_len,
              f"copying: need 1 <= min_len <= max_len, got {self.min_len}, {self.max_len}")
        if self.mode != "copy":
            check(self.ngram_len >= 1 and self.answer_len >= 1,
                  f"copying: ngram_len and answer_len must be >= 1, got {self.ngram_len}, {self.answer_len}")
            check(self.min_len >= self.ngram_len + self.answer_len,
                  f"copying: min_len={self.min_len} must be >= ngram_len + answer_len = "
                  f"{self.ngram_len + self.answer_len}")
            check(A ** self.ngram_len >= 2 or self.min_len == self.ngram_len + self.answer_len,
                  f"copying: ngram_len={self.ngram_len} with {A} letters cannot make a unique n-gram")
        longest = self.example_len(self.max_len)
        check(self.seq_len >= longest, f"copying: max_len={self.max_len} needs seq_len >= {longest} (one whole "
                                       f"example), got {self.seq_len}; raise task.seq_len or lower task.max_len")

    @property
    def input_len(self) -> int:
        return self.seq_len

    def example_len(self, n: int) -> int:
        """Tokens in one example with a string of n letters."""
        if self.mode == "copy":
            return 2 * n + 3
        return n + self.ngram_len + self.answer_len + 4

    def generate(self, num_examples: int, seed: int, *, split: Split = "test") -> Batch:
        gen = generator(seed)
        if split == "train" and self.pack_train:
            per_row = math.ceil(self.seq_len / self.example_len(self.min_len)) + 1
            return in_chunks(lambda n: self._packed(n, per_row, gen), num_examples, chunk=4096)
        return in_chunks(lambda n: self._single(n, gen), num_examples, chunk=16384)

    def _single(self, n: int, gen: torch.Generator) -> Batch:
        pieces = self._examples(n, gen)
        return self._place(pieces, torch.zeros(n, 1, dtype=torch.long), torch.ones(n, dtype=torch.bool), n)

    def _packed(self, n: int, per_row: int, gen: torch.Generator) -> Batch:
        pieces = self._examples(n * per_row, gen)
        length = sum(p[1] for p in pieces).view(n, per_row)
        end = length.cumsum(1)
        start = (end - length).view(-1, 1)  # each example's first position in its row
        fits = (end <= self.seq_len).view(-1)  # the example cut by the row's end is unlabelled
        return self._place(pieces, start, fits, n)

    def _place(self, pieces, start, labelled, n: int) -> Batch:
        """Write k = n * per_row examples' pieces, row-major (examples of row 0 first), at `start`
        [k, 1] of an [n, seq_len] pad canvas (positions past the end are dropped); label the
        answers of `labelled` [k] examples."""
        T, pad = self.seq_len, self.vocab_size - 1
        inputs = torch.full((n, T + 1), pad, dtype=torch.long)  # column T: trash
        is_answer = torch.zeros(n, T + 1, dtype=torch.bool)
        for tokens, length, answer in pieces:
            pos = start + torch.arange(tokens.shape[1])
            pos = torch.where((pos < start + length) & (pos < T), pos, T)
            pos = pos.view(n, -1)  # rows of `row` are grouped: [n, examples per row * w]
            inputs.scatter_(1, pos, tokens.view(n, -1))
            if answer:
                is_answer.scatter_(1, pos, labelled.unsqueeze(1).expand_as(tokens).reshape(n, -1))
            start = start + length
        inputs, is_answer = inputs[:, :T], is_answer[:, :T]
        return Batch(inputs, _shift_labels(inputs, is_answer))

    def _examples(self, count: int, gen: torch.Generator) -> list[tuple[torch.Tensor, torch.Tensor, bool]]:
        """`count` examples as pieces in order: (tokens [count, w], length [count, 1], is answer)."""
        A, N = self.vocab_size - 4, self.max_len
        dollar, bar, eos = A, A + 1, A + 2
        n = torch.randint(self.min_len, N + 1, (count, 1), generator=gen)
        s = torch.randint(0, A, (count, N), generator=gen)
        width_one = torch.ones(count, 1, dtype=torch.long)
        one = lambda tok: (torch.full((count, 1), tok, dtype=torch.long), width_one)  # noqa: E731
        string = (s, n)
        if self.mode == "copy":
            return [(*one(dollar), False), (*string, False), (*one(bar), False), (*string, True), (*one(eos), True)]
        s, j = self._unique_ngram(s, n, gen)
        g = s.gather(1, j + torch.arange(self.ngram_len))
        a = s.gather(1, j + self.ngram_len + torch.arange(self.answer_len))
        gram, ans = (g, torch.full_like(n, self.ngram_len)), (a, torch.full_like(n, self.answer_len))
        string = (s, n)
        if self.mode == "prefix_lookup":
            return [(*one(dollar), False), (*gram, False), (*one(bar), False), (*string, False),
                    (*one(bar), False), (*ans, True), (*one(eos), True)]
        return [(*one(dollar), False), (*string, False), (*one(bar), False), (*gram, False), (*ans, True),
                (*one(eos), True)]

    def _unique_ngram(self, s: torch.Tensor, n: torch.Tensor, gen: torch.Generator):
        """Start j [count, 1] of an n-gram occurring once in s (with room for the answer after
        it), redrawing s where the drawn n-gram repeats."""
        m, A = self.ngram_len, self.vocab_size - 4
        j = torch.empty_like(n)
        todo = torch.arange(s.shape[0])
        while todo.numel() > 0:
            room = n[todo] - m - self.answer_len + 1  # valid starts: [0, room)
            j[todo] = (torch.rand(todo.numel(), 1, generator=gen) * room).long()
            windows = s[todo].unfold(1, m, 1)  # [k, N-m+1, m]
            g = windows.gather(1, j[todo].unsqueeze(2).expand(-1, 1, m))
            inside = torch.arange(windows.shape[1]) <= n[todo] - m
            hits = ((windows == g).all(2) & inside).sum(1)
            todo = todo[hits > 1]
            s[todo] = torch.randint(0, A, (todo.numel(), s.shape[1]), generator=gen)
        return s, j


def _shift_labels(inputs: torch.Tensor, is_answer: torch.Tensor) -> torch.Tensor:
    """labels[t] = inputs[t+1] where inputs[t+1] is an answer token."""
    labels = torch.full_like(inputs, IGNORE)
    labels[:, :-1] = torch.where(is_answer[:, 1:], inputs[:, 1:], IGNORE)
    return labels
