"""Refusing query parameters a route does not take, as unknown JSON fields are refused.

FastAPI ignores them, so a typo such as `?decison=accept` answered 200 with the unfiltered
log and looked like a filter that worked. A parameter given twice is refused too: FastAPI
keeps the last value of a scalar one, so `?decision=accept&decision=abstain` looked like
a filter on both and listed only abstentions (every parameter of these routes is a scalar).
Called from the route body, after the admin check, so an unauthenticated caller still
learns nothing but 401.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from service.errors import ApiError, quoted


def query_names(dependant: Any) -> set[str]:
    """The query parameters of a FastAPI `Dependant` and of its sub-dependencies."""
    names = {p.alias for p in dependant.query_params}
    for sub in dependant.dependencies:
        names |= query_names(sub)
    return names


def reject_unknown_query(request: Request) -> None:
    if not request.query_params:  # every prediction: nothing to look up
        return
    route = request.scope.get("route")
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return
    known = sorted(query_names(dependant))
    unknown = sorted(set(request.query_params) - set(known))
    if unknown:
        names = ", ".join(quoted(n) for n in unknown[:5])  # the client's text: cut
        raise ApiError(422, "unknown_parameter", f"unknown query parameter {names}; this endpoint takes: {', '.join(known) or 'none'}")
    repeated = sorted({n for n in request.query_params if len(request.query_params.getlist(n)) > 1})
    if repeated:
        # Only the route's own names get here (an unknown one was refused above), yet quoted as
        # every client string is, so that no later change can echo a long one whole.
        names = ", ".join(quoted(n) for n in repeated)
        raise ApiError(422, "repeated_parameter", f"query parameter {names} is given more than once; each takes one value")


StrictQuery = Annotated[None, Depends(reject_unknown_query)]
