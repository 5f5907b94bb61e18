"""Error answers routes declare in the OpenAPI schema, so clients (and the fuzz test)
know every status a route may give besides its success."""

from __future__ import annotations

from typing import Any

type Answers = dict[int | str, dict[str, Any]]


def answer(status: int, description: str) -> Answers:
    return {status: {"description": description}}


NO_RUN = answer(404, "No run of that id.")
NO_PIPELINE = answer(404, "No pipeline of that name.")
NO_FOLDER = answer(404, "No such folder under DARA_JOBS_ROOT.")
ID_TAKEN = answer(409, "The id names a run of another pipeline.")
RUN_ENDED = answer(409, "The run has already ended.")
NOT_YOURS = answer(403, "Someone else started the run, and you are not one of DARA_ADMINS.")
CALLBACK_REFUSED = (
    answer(401, "No token.")
    | answer(403, "The token is not this wait's: another promise's, an earlier run's of the same id, or not a wait.")
    | answer(404, "No such run or promise.")
    | answer(409, "The wait was already settled otherwise: another value, the other outcome, its deadline or a cancel.")
)
