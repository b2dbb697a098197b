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

Sanity (tested): ~14% of programs exceed 512 tokens and P(answer=10) ~ 0.21, as TASKS.md's
simulation; the program alone averages ~320 tokens (TASKS.md: 316-320), ~323 with the question
and answer.

Example, `Counting(num_vars=1, min_statements=3, max_statements=5, seq_len=16).generate(1, seed=0)`::

    Inputs: 1 1 1 17 2 6 3 1 5 17 6 0 0 0 0 0
    Labels: . . . . . . . . . 6 . . . . . .
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch

from ._util import in_chunks
from .base import IGNORE, Batch, Split, Task, check, generator

PAD, PASS, EQUALS, SEMI, INCR, PRINT, NUMBERS = 0, 1, 2, 3, 4, 5, 6


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
        # a YAML list (or OmegaConf ListConfig) becomes a hashable tuple of floats
        object.__setattr__(self, "op_weights", tuple(float(w) for w in self.op_weights))
        need = self.first_var + self.num_vars
        check(self.num_vars >= 1, f"counting: num_vars must be >= 1, got {self.num_vars}")
        check(self.max_value >= 1, f"counting: max_value must be >= 1, got {self.max_value}")
        check(self.vocab_size >= need, f"counting: num_vars={self.num_vars} and max_value={self.max_value} need "
                                       f"vocab_size >= {need}, got {self.vocab_size}")
        check(1 <= self.min_statements <= self.max_statements,
              f"counting: need 1 <= min_statements <= max_statements, got {self.min_statements}, {self.max_statements}")
        check(len(self.op_weights) == 3 and all(w >= 0 for w in self.op_weights) and self.op_weights[0] > 0,
              f"counting: op_weights must be 3 weights (set, dummy, increment) >= 0 with set > 0, "
              f"got {self.op_weights}")
        check(self.truncate in ("left", "reject"),
              f"counting: truncate must be 'left' or 'reject', got {self.truncate!r}")
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
            program = self._draw(n - have + (n - have) // 4 + 64, gen)
            ok = program["answer"] >= 0
            if self.truncate == "reject":
                ok &= program["length"] <= self.seq_len
            ok &= ok.long().cumsum(0) <= n - have  # the first ones only
            parts.append(self._to_batch(program, ok))
            have += int(ok.sum())
        return Batch(torch.cat([p.inputs for p in parts]), torch.cat([p.labels for p in parts]))

    def _draw(self, n: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
        """n programs: their SET/INCREMENT events (row, first token, is increment, variable), token
        lengths [n] (program + question + answer) and answers [n] (-1: nothing set)."""
        nv = self.num_vars
        count = torch.randint(self.min_statements, self.max_statements + 1, (n,), generator=gen)
        value = torch.full((n, nv), -1, dtype=torch.long)  # -1: not set
        pos = torch.zeros(n, dtype=torch.long)  # index of each program's next statement
        extra = torch.zeros(n, dtype=torch.long)  # tokens so far beyond one per statement
        events: list[tuple[torch.Tensor, ...]] = []
        rows = torch.arange(n)  # programs not finished yet
        while rows.numel() > 0:
            rows = self._next_event(rows, count, pos, extra, value, events, gen)
        # 4. the question: a uniform set variable
        is_set = value >= 0
        q = (torch.rand(n, nv, generator=gen) - 2.0 * (~is_set).float()).argmax(1)
        answer = torch.where(is_set.any(1), value.gather(1, q[:, None]).squeeze(1), -1)
        empty = torch.zeros(0, dtype=torch.long)
        row, first, inc, var = (torch.cat(c) if c else empty for c in zip(*events)) if events else (empty,) * 4
        return dict(length=count + extra + 3, question=q, answer=answer, row=row, first=first, inc=inc, var=var)

    def _next_event(self, rows, count, pos, extra, value, events, gen) -> torch.Tensor:
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
        events.append((r, at + extra[r], is_inc.long(), v))
        value[r, v] = torch.where(is_inc, value[r, v] + 1, 0)
        extra[r] += torch.where(is_inc, 1, 3)  # `v ++;` is 2 tokens, `v = 0 ;` is 4
        pos[r] = at + 1
        return r[pos[r] < count[r]]

    def _to_batch(self, program: dict[str, torch.Tensor], ok: torch.Tensor) -> Batch:
        """5-6. Tokens of the accepted programs `ok`, left-truncated to seq_len, right-padded."""
        T = self.seq_len
        new_row = ok.long().cumsum(0) - 1
        length = program["length"][ok]
        drop = (length - T).clamp(min=0)  # tokens cut on the left
        kept = (length - drop).unsqueeze(1)  # [m, 1]
        inputs = torch.where(torch.arange(T) < kept, PASS, PAD)  # every statement is `pass;` ...
        sel = ok[program["row"]]  # ... except the events, written over them
        r = new_row[program["row"][sel]]
        first, inc, v = program["first"][sel] - drop[r], program["inc"][sel], self.first_var + program["var"][sel]
        set_tokens = torch.stack([v, torch.full_like(v, EQUALS), torch.full_like(v, NUMBERS), torch.full_like(v, SEMI)])
        inc_tokens = torch.stack([v, torch.full_like(v, INCR), torch.full_like(v, PAD), torch.full_like(v, PAD)])
        tokens = torch.where(inc.bool(), inc_tokens, set_tokens)  # [4, events]
        for j in range(4):
            where = (first + j >= 0) & (first + j < T) & (j < 4 - 2 * inc)
            inputs[r[where], first[where] + j] = tokens[j][where]
        answer = NUMBERS + program["answer"][ok].unsqueeze(1)
        variable = self.first_var + program["question"][ok].unsqueeze(1)
        question = torch.cat([torch.full_like(answer, PRINT), variable, answer], 1)
        inputs.scatter_(1, kept - 3 + torch.arange(3), question)
        labels = torch.full_like(inputs, IGNORE).scatter_(1, kept - 2, answer)
        return Batch(inputs, labels)
