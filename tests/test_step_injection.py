"""What a step is given (app.durable.step.StepDependencies), on the SDK's in-process test server.

Steps never import the service: they declare a protocol of steps.injected, and the
wiring says what provides it. Only the types provided are filled in, so registering
something else with Resonate cannot take a parameter away from the pipeline.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from typing import Any

import pytest
from resonate.testing import local_resonate

from app.callback_tokens import CallbackSigner
from app.durable import Context, StepDependencies, drive
from steps.injected import CallbackIssuer, StepIdentity

pytestmark = pytest.mark.anyio


@dataclasses.dataclass(frozen=True)
class Point:
    x: int
    y: int


def shift(p: Point) -> Point:
    return Point(p.x + 1, p.y + 1)


def callback_widgets(issuer: CallbackIssuer, step: StepIdentity, promise_id: str) -> dict[str, str]:
    """Shaped like run_job: a callback for ``promise_id``, and who asked."""
    return {**issuer.callback(promise_id, step.incarnation).widgets(), "step": step.id}


async def run(gen_fn: Any, run_id: str, *dependencies: object) -> Any:
    resonate = local_resonate()
    for dependency in dependencies:
        resonate.with_dependency(dependency)
    durable = drive(gen_fn)
    resonate.register(durable, name=gen_fn.__name__)
    try:
        return await resonate.run(run_id, durable).result()
    finally:
        await resonate.stop()


async def test_a_parameter_whose_type_is_registered_with_resonate_is_still_the_pipelines_to_pass() -> None:
    def moves_a_point(ctx: Context) -> Generator[Any, Any, Point]:
        return (yield ctx.run(shift, Point(1, 2)))

    # A Point registered for some other reason is not a Point given to steps.
    assert await run(moves_a_point, "inj-registered", Point(0, 0), StepDependencies()) == Point(2, 3)


async def test_a_step_gets_what_the_wiring_provides_for_the_protocols_it_declares() -> None:
    signer = CallbackSigner("s" * 32, "https://dara.example.com")

    def asks_for_a_callback(ctx: Context) -> Generator[Any, Any, dict[str, str]]:
        return (yield ctx.run(callback_widgets, "inj-protocols:9"))

    provided = StepDependencies().provide(CallbackIssuer, signer).step_info_as(StepIdentity)
    widgets = await run(asks_for_a_callback, "inj-protocols", provided)

    assert widgets["step"] == "inj-protocols:1"
    assert widgets["promise_id"] == "inj-protocols:9"
    assert widgets["callback_url"] == "https://dara.example.com"
    assert signer.issued_for("inj-protocols:9", widgets["callback_signature"]) == ""  # no incarnation: a bare run


def test_wiring_an_object_that_lacks_what_a_protocol_asks_fails_at_once() -> None:
    with pytest.raises(TypeError, match="str does not provide CallbackIssuer"):
        StepDependencies().provide(CallbackIssuer, "not a signer")
