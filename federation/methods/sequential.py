"""Sequential: a chain; each stage's template places the request and the previous stage's output."""

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from federation.errors import FederationError, InferenceError
from federation.methods.base import CompositionMethod
from federation.spec import fill_template, template_problem

if TYPE_CHECKING:
    from federation.run import FederationStream
    from federation.spec import Federation, Member
    from training.adapters import AdapterRecord


class Sequential(CompositionMethod):
    name = "sequential"
    help = "A chain: each stage's output is placed into the next stage's prompt; every stage is shown."
    min_members = 2
    options = frozenset({"templates"})

    def settle(self, records: Sequence["AdapterRecord"], members: Sequence["Member"], **options: Any) -> dict[str, Any]:
        for member in members:
            problem = template_problem(member.template)
            if problem:
                raise FederationError(
                    f"The prompt template of {member.label} is invalid: {problem}. Use {{input}} for the "
                    "request and {previous} for the previous stage's output."
                )
        return {}

    def summary(self, federation: "Federation") -> str:
        return f"sequential · {len(federation.members)} stages"

    def member_detail(self, member: "Member") -> str:
        return f" · prompt: {member.template}"

    def answer(self, stream: "FederationStream") -> Iterator[str]:
        """A chat's earlier turns reach the first stage only, the one that reads the request."""
        from federation.engine import Activation, Generation
        from federation.run import Stage

        stages: list[Stage] = []
        previous, load_ms, latency_ms, prompt_tokens = "", 0.0, 0.0, 0
        members = stream.federation.members
        for index, member in enumerate(members):
            prompt = stage_prompt(member, stream.prompt, previous)
            generation_stream = stream.engine.stream(
                stream.federation.base,
                prompt,
                stream.settings,
                Activation(members=(member,), scales=(1.0,)),
                caller=stream.caller,
                target=stream.federation.id,
                history=stream.history if index == 0 else (),
            )
            if index == len(members) - 1:
                yield from generation_stream
            else:
                for _ in generation_stream:
                    pass
            generation = generation_stream.result
            stages.append(
                Stage(
                    adapter=member.label,
                    prompt=prompt,
                    response=generation.response,
                    tokens=generation.tokens,
                    latency_ms=generation.latency_ms,
                )
            )
            previous = generation.response
            load_ms += generation.load_ms
            latency_ms += generation.latency_ms
            prompt_tokens += generation.prompt_tokens
        total = Generation(
            response=previous,
            tokens=sum(s.tokens for s in stages),
            prompt_tokens=prompt_tokens,
            latency_ms=round(latency_ms, 2),
            load_ms=round(load_ms, 2),
            first_token_ms=None,
        )
        stream.finish(total, [m.label for m in members], stages=stages)


def stage_prompt(member: "Member", request: str, previous: str) -> str:
    """A hand-edited federation file is held to the same template rule as compose."""
    problem = template_problem(member.template)
    if problem:
        raise InferenceError(f"The prompt template of {member.label} is invalid: {problem}. Compose it again.")
    return fill_template(member.template, request, previous)
