"""Parameter types a pipeline declares for values DARA checks when a run starts.

They are checked against facts of the running service, passed as pydantic's
validation context by the start of a run (``POST /runs`` answers 422). Without that
context -- a unit test calling the pipeline model directly -- they check only their
shape; the steps that use the values check them again.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo

#: Validation-context key: the base URLs DARA answers at (DARA_PUBLIC_URL, DARA_CALLBACK_URLS).
CALLBACK_URLS = "callback_urls"


def _dara_answers_there(url: str, info: ValidationInfo) -> str:
    allowed = (info.context or {}).get(CALLBACK_URLS)
    if allowed is not None and url.rstrip("/") not in allowed:
        msg = (
            f"notebooks may call back only {' or '.join(allowed)}, not {url[:200]!r}; "
            "add the URL to DARA_CALLBACK_URLS if DARA answers there"
        )
        raise ValueError(msg)
    return url


#: A base URL a notebook is told to call back: DARA_PUBLIC_URL or one of DARA_CALLBACK_URLS.
CallbackUrl = Annotated[str, Field(max_length=2048), AfterValidator(_dara_answers_there)]
