"""The judge model (``--vl-judge``): loaded once per process in its own pool (it stays resident next to the
model under test), asked greedily, and its replies kept in a verdict cache.

A verdict is reused only when nothing that could change it changed: the judge's fingerprint (the same content
hashing as the models under test), the template's hash, the judge's settings (its token budget), the exact
prompt (rubric, question, reference, answer, section order) and, when the judge sees them, the images' bytes.
The cache key is separate from the answer cache's, so re-judging unchanged answers is free and a new judge or
template asks again. Where: ``AnswerCache.verdict_key`` (table ``verdicts`` of the cache's database)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence

from pytest_vleval.backends.base import Conversation, GenerationFailure, ModelSpec
from pytest_vleval.cases.casefile import Case
from pytest_vleval.cases.fields import Turn
from pytest_vleval.predict.cache import AnswerCache, VerdictKey
from pytest_vleval.predict.fingerprints import ModelFingerprint
from pytest_vleval.predict.pool import ModelLoadFailed, ModelPool
from pytest_vleval.scoring.base import ScoreResult
from pytest_vleval.scoring.judge import JudgeOutcome, JudgeRequest, Reply, choice_by_judge, grade
from pytest_vleval.scoring.judge_prompt import template_sha256

__all__ = ["JUDGE_MAX_NEW_TOKENS", "JudgeRunner"]

JUDGE_MAX_NEW_TOKENS = 128  # a verdict is one short JSON object


class JudgeRunner:
    """Grades judged turns for every model of the run with one judge."""

    def __init__(
        self,
        spec: ModelSpec,
        pool: ModelPool,
        *,
        repeat: int = 1,
        cache: AnswerCache | None = None,
        fingerprint: Callable[[ModelSpec], ModelFingerprint] | None = None,
        max_new_tokens: int = JUDGE_MAX_NEW_TOKENS,
    ) -> None:
        self.spec, self.pool, self.repeat = spec, pool, repeat
        self.cache, self._fingerprint = cache, fingerprint
        self.max_new_tokens = max_new_tokens

    def grade(self, case: Case, turn: Turn, answer: str) -> JudgeOutcome:
        key, ask = self._asker(case)
        return grade(turn, answer, self.repeat, ask, judge=self.spec.label, fingerprint=key)

    def choose(self, case: Case, turn: Turn, answer: str) -> tuple[ScoreResult, dict[str, object]]:
        """The option a multiple-choice answer means, by the judge (when the rules read none)."""
        key, ask = self._asker(case)
        return choice_by_judge(turn, answer, ask, judge=self.spec.label, fingerprint=key)

    def _asker(self, case: Case) -> tuple[str | None, Callable[[Sequence[JudgeRequest]], list[Reply]]]:
        """The judge's fingerprint key (None: its replies are not cached) and how to ask it about `case`. A judge
        that cannot be fingerprinted because it cannot load (a served one is probed) answers every request with
        that failure."""
        try:
            fingerprint = self._fingerprint(self.spec) if self._fingerprint is not None else None
        except ModelLoadFailed as exc:
            failure = Reply(failure=f"it could not be loaded: {exc.reason}")
            return None, lambda requests: [failure for _ in requests]
        key = fingerprint.key if fingerprint is not None else None
        return key, lambda requests: self._ask(case, requests, key)

    def _entry(self, key: str | None, case: Case, request: JudgeRequest) -> VerdictKey | None:
        if self.cache is None or key is None:
            return None
        content = {
            "template": template_sha256(request.template),
            "max_new_tokens": self.max_new_tokens,
            "prompt": request.prompt.text,
            "images": [self.cache.file_hash(p) for p in case.images] if request.with_images else [],
        }
        return self.cache.verdict_key(self.spec.label, key, content)

    def _ask(self, case: Case, requests: Sequence[JudgeRequest], key: str | None) -> list[Reply]:
        entries = [self._entry(key, case, r) for r in requests]
        replies: list[Reply | None] = []
        for entry in entries:
            text = self.cache.get_verdict(entry) if entry is not None and self.cache is not None else None
            replies.append(None if text is None else Reply(text, cached=True))
        pending = [i for i, reply in enumerate(replies) if reply is None]
        if pending:
            try:
                backend = self.pool.get(self.spec)
            except ModelLoadFailed as exc:
                return [Reply(failure=f"it could not be loaded: {exc.reason}") for _ in requests]
            conversations = [
                Conversation(
                    images=case.images if requests[i].with_images else (),
                    question=requests[i].prompt.text,
                    max_new_tokens=self.max_new_tokens,
                )
                for i in pending
            ]
            try:
                answers: Sequence[str | GenerationFailure] = backend.generate(conversations)
            except Exception as exc:  # the judge's own failure: an ERROR of this case, not of the model
                answers = [GenerationFailure(f"{type(exc).__name__}: {exc}")] * len(pending)
            with self.cache.batch() if self.cache is not None else contextlib.nullcontext():
                for i, answer in zip(pending, answers, strict=True):
                    if isinstance(answer, GenerationFailure):
                        replies[i] = Reply(failure=answer.message)
                        continue
                    replies[i] = Reply(answer)
                    entry = entries[i]
                    if entry is not None and self.cache is not None:
                        self.cache.put_verdict(entry, answer)
        return [reply for reply in replies if reply is not None]
