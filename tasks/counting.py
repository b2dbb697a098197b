"""Counting (Golovneva, Wang, Weston, Sukhbaatar 2024, *Contextual Position Encoding*, arXiv
2405.18719; reference facebookresearch/RAM `projects/cope/scripts/count_data_gen.py`).

A program of SET / pass / INCREMENT statements over a few variables, then `print v`: the model
must output v's value, i.e. count the increments since v's latest reset among many `pass;`.

1. Statement count uniform on {min_statements..max_statements} (3..512).
2. Each statement is drawn with weights SET 1 : DUMMY 50 : INCREMENT 7 (`op_weights`):
   SET `v = 0 ;` on a uniform variable (it may re-set one); DUMMY `pass;`; INCREMENT `v ++;` on a
   uniform already-set variable. An increment with nothing set, or one that would pass
   `max_value` (10), redraws the whole statement. Redrawing until valid is the same as one draw
   from the weights restricted to the valid statements, which is what we do (the reference's cap
   of 100 tries is never reached: a statement is invalid with probability <= 7/58).
3. A program ending with no variable set is redrawn (whole program, new length).
4. Question `print v` for a uniform set variable; the answer is its value (0..max_value).
5. Tokens (whitespace split), fixed ids: pad 0, `pass;` 1, `=` 2, `;` 3, `++;` 4, `print` 5,
   numbers 0..max_value -> 6.., variables after the numbers (17.. at max_value=10). The sequence
   is program, question, answer; `truncate="left"` keeps its last seq_len tokens (reference),
   `"reject"` redraws programs longer than seq_len; right-padded with 0 to seq_len.
6. The only label is on the question's variable token and holds the answer token (error is
   sequence-level; the answer token itself is the next input and is unlabelled).

Vectorised across examples: a loop over SET/INCREMENT events, with geometric runs of `pass;`
between them (exactly the same distribution as a loop over statements).

Choices stated explicitly (TASKS.md §6): `truncate` (left truncation can drop the defining SET, so
some answers are then unknowable); the RNG is seeded (the reference is not); resampling skews the
1:50:7 op frequencies, as in the reference; a fixed vocabulary replaces the reference's first-seen
ids. Paper settings: num_vars in {1, 3, 5}, 10k train / 1k test, block 512.

Example, `Counting(num_vars=1, min_statements=3, max_statements=5, seq_len=16).generate(1, seed=0)`::

    Inputs: 1 1 1 17 2 6 3 1 5 17 6 0 0 0 0 0
    Labels: . . . . . . . . . 6 . . . . . .
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ._util import compact, in_chunks
from .base import IGNORE, Batch, Split, Task, check, generator

PAD, PASS, EQUALS, SEMI, INCR, PRINT, NUMBERS = 0, 1, 2, 3, 4, 5, 6
NONE, SET, DUMMY, INCREMENT = 0, 1, 2, 3  # statement kinds (NONE: past the program's end)


@dataclass(frozen=True, kw_only=True)
class Counting(Task):
    name = "counting"
    metric = "sequence"

    vocab_size: int = 22
    num_vars: int = 3
    seq_len: int = 512
    min_statements: int = 3
    max_statements: int = 512
    max_value: int = 10
    op_weights: tuple[float, float, float] = (1.0, 50.0, 7.0)
    truncate: Literal["left", "reject"] = "left"

    def __post_init__(self) -> None:
        need = self.first_var + self.num_vars
        check(self.num_vars >= 1, f"counting: num_vars must be >= 1, got {self.num_vars}")
        check(self.max_value >= 1, f"counting: max_value must be >= 1, got {self.max_value}")
        check(self.vocab_size >= need, f"counting: num_vars={self.num_vars} and max_value={self.max_value} need "
                                       f"vocab_size >= {need}, got {self.vocab_size}")
        check(1 <= self.min_statements <= self.max_statements,
              f"counting: need 1 <= min_statements <= max_statements, got {self.min_statements}, {self.max_statements}")
        check(len(self.op_weights) == 3 and all(w >= 0 for w in self.op_weights) and self.op_weights[0] > 0,
              f"counting: op_weights must be 3 weights (set, dummy, increment) >= 0 with set > 0, got {self.op_weights}")
        check(self.truncate in ("left", "reject"), f"counting: truncate must be 'left' or 'reject', got {self.truncate!r}")
        # the shortest program: one SET and the rest `pass;`, plus `print v n`
        shortest = 4 + (self.min_statements - 1) + 3
        check(self.seq_len >= 8 and (self.truncate == "left" or self.seq_len >= shortest),
              f"counting: seq_len={self.seq_len} is too short (need >= 8, and >= {shortest} with truncate='reject')")

    @property
    def first_var(self) -> int:
        return NUMBERS + self.max_value + 1

    @property
    def input_len(self) -> int:
        return self.seq_len

    def generate(self, num_examples: int, seed: int, *, split: Split = "test") -> Batch:
        gen = generator(seed)
        return in_chunks(lambda n: self._accepted(n, gen), num_examples, chunk=16384)

    def _accepted(self, n: int, gen: torch.Generator) -> Batch:
        """n examples: draws programs with a margin and keeps the first n accepted ones (step 3;
        with truncate='reject' also those that fit), drawing again for any shortfall."""
        parts, have = [], 0
        while have < n:
            tokens, keep, answer = self._draw(n - have + (n - have) // 4 + 64, gen)
            ok = answer >= 0
            if self.truncate == "reject":
                ok &= keep.sum(1) <= self.seq_len
            ok &= ok.long().cumsum(0) <= n - have  # the first ones only
            parts.append(self._tokens_to_batch(tokens[ok], keep[ok], answer[ok]))
            have += int(ok.sum())
        return Batch(torch.cat([p.inputs for p in parts]), torch.cat([p.labels for p in parts]))

    def _draw(self, n: int, gen: torch.Generator):
        """n programs as a token table [n, 4*S+3] with a keep mask, and answers [n] (-1: nothing set)."""
        S, nv = self.max_statements, self.num_vars
        count = torch.randint(self.min_statements, S + 1, (n,), generator=gen)
        kind = torch.where(torch.arange(S) < count.unsqueeze(1), DUMMY, NONE)  # [n, S]
        var = torch.zeros(n, S, dtype=torch.long)
        value = torch.full((n, nv), -1, dtype=torch.long)  # -1: not set
        pos = torch.zeros(n, dtype=torch.long)  # index of each program's next statement
        rows = torch.arange(n)  # programs not finished yet
        while rows.numel() > 0:
            rows = self._next_event(rows, count, pos, kind, var, value, gen)
        # 4. the question: a uniform set variable
        is_set = value >= 0
        q = (torch.rand(n, nv, generator=gen) - 2.0 * (~is_set).float()).argmax(1)
        answer = torch.where(is_set.any(1), value.gather(1, q[:, None]).squeeze(1), -1)
        return self._token_table(kind, var, q, answer)

    def _next_event(self, rows, count, pos, kind, var, value, gen) -> torch.Tensor:
        """Advance `rows` to their next SET/INCREMENT statement; return the rows still running.

        2. Redrawing an invalid statement until a valid one comes is one draw from the weights
        restricted to the valid statements. Between two SET/INCREMENT events the state is fixed, so
        the number of `pass;` before the next event is geometric: one loop step per event (~35 per
        program), not per statement (~260)."""
        w_set, w_dummy, w_inc = self.op_weights
        k = rows.numel()
        cur = value[rows]  # [k, nv]
        is_set = cur >= 0
        can_inc = is_set & (cur < self.max_value)
        w_valid_inc = w_inc * can_inc.sum(1) / is_set.sum(1).clamp(min=1)  # [k]
        p_event = (w_set + w_valid_inc) / (w_set + w_dummy + w_valid_inc)
        u = torch.rand(k, 2, generator=gen, dtype=torch.float64)
        gap = (u[:, 0].clamp(min=1e-300).log() / torch.log1p(-p_event.double())).floor().long()
        at = pos[rows] + gap
        happens = at < count[rows]
        r, at = rows[happens], at[happens]
        # the event: SET (uniform variable) or INCREMENT (uniform valid variable)
        is_inc = (u[happens, 1] * (w_set + w_valid_inc[happens]) >= w_set)
        set_var = torch.randint(0, self.num_vars, (k,), generator=gen)[happens]
        inc_var = (torch.rand(k, self.num_vars, generator=gen) - 2.0 * (~can_inc).float()).argmax(1)[happens]
        v = torch.where(is_inc, inc_var, set_var)
        kind[r, at] = torch.where(is_inc, INCREMENT, SET)
        var[r, at] = v
        value[r, v] = torch.where(is_inc, value[r, v] + 1, 0)
        pos[r] = at + 1
        return r[pos[r] < count[r]]

    def _token_table(self, kind, var, q, answer):
        n, S = kind.shape
        v_tok = self.first_var + var
        table = torch.stack([v_tok, torch.full_like(var, EQUALS), torch.full_like(var, NUMBERS),
                             torch.full_like(var, SEMI)], dim=2)  # SET: v = 0 ;
        table[..., 0] = torch.where(kind == DUMMY, PASS, table[..., 0])
        table[..., 1] = torch.where(kind == INCREMENT, INCR, table[..., 1])
        width = torch.tensor([0, 4, 1, 2])[kind]  # tokens per statement kind
        keep = torch.arange(4) < width.unsqueeze(2)
        question = torch.stack([torch.full_like(q, PRINT), self.first_var + q, NUMBERS + answer.clamp(min=0)], 1)
        tokens = torch.cat([table.view(n, 4 * S), question], dim=1)
        keep = torch.cat([keep.view(n, 4 * S), torch.ones(n, 3, dtype=torch.bool)], dim=1)
        return tokens, keep, answer

    def _tokens_to_batch(self, tokens, keep, answer) -> Batch:
        T = self.seq_len
        length = keep.sum(1, keepdim=True)
        inputs = compact(tokens, keep, T, PAD, offset=-(length - T).clamp(min=0))
        labels = torch.full_like(inputs, IGNORE)
        kept = length.clamp(max=T)  # the answer is the last kept token, the variable before it
        labels.scatter_(1, kept - 2, (NUMBERS + answer).unsqueeze(1))
        return Batch(inputs, labels)
