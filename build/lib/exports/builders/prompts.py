"""The `prompts` dataset: the prompt pool for the PPO stage, one row per distinct first user
turn (after its system prompt, if the conversation has one), reported prompts left out.

Prompts are deduplicated by their text with case and runs of whitespace folded; the first
(oldest) one is kept.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

from annotations.models import Message
from annotations.text import normalise
from exports.builders.common import (
    ExportContext,
    Row,
    date_filter,
    dumps,
    iso,
    keyset_chunks,
    source_of,
)


def _prompts(ctx: ExportContext):
    """First user turns: roots, and user turns right under a system root."""
    choices = ctx.choices
    prompts = Message.objects.filter(
        conversation__project=ctx.project, role=Message.Role.USER, depth__lte=1
    ).filter(date_filter("created_at", choices))
    prompts = prompts.exclude(depth=1, parent__role=Message.Role.USER)
    if choices.languages:
        prompts = prompts.filter(lang__in=choices.languages)
    if ctx.reported_conversations:
        prompts = prompts.exclude(conversation_id__in=ctx.reported_conversations)
    if ctx.excluded_annotators:
        prompts = prompts.exclude(author_user_id__in=ctx.excluded_annotators)
    # A prompt a lead excluded, or one under an excluded system prompt, stays out.
    prompts = prompts.exclude(is_excluded=True).exclude(parent__is_excluded=True)
    return prompts.exclude(pk__in=ctx.scratch_messages)


def expected_rows(ctx: ExportContext) -> int:
    return _prompts(ctx).count()


def rows(ctx: ExportContext) -> Iterator[Row]:
    seen: set[bytes] = set()
    fields = (
        "conversation_id",
        "text",
        "lang",
        "parent__role",
        "parent__text",
        "conversation__source",
        "conversation__meta",
        "created_at",
    )
    for chunk in keyset_chunks(_prompts(ctx), fields):
        for (
            pk,
            conversation_id,
            text,
            lang,
            parent_role,
            parent_text,
            source,
            meta,
            created,
        ) in chunk:
            prompt = [{"role": "user", "content": text}]
            if parent_role == Message.Role.SYSTEM:
                prompt.insert(0, {"role": "system", "content": parent_text})
            folded = "\x00".join(normalise(m["content"]) for m in prompt)
            key = hashlib.blake2b(folded.encode(), digest_size=16).digest()
            if key in seen:
                ctx.count("duplicate_prompts")
                continue
            seen.add(key)
            row = {
                "prompt": prompt,
                "meta": {
                    "message_id": pk,
                    "conversation_id": conversation_id,
                    "source": source_of(source, meta),
                    "lang": lang,
                    "tags": list((meta or {}).get("tags", [])),
                    "created_at": iso(created),
                },
            }
            yield Row(conversation_id, dumps(row), source_of(source, meta))
