"""The OpenAPI description of the HTTP API, served at ``/openapi.json``."""

from __future__ import annotations

import json
from html import escape
from typing import Any

__all__ = ["SPEC", "docs_page"]

_ERROR: dict[str, Any] = {
    "type": "object",
    "properties": {
        "error": {
            "type": "object",
            "properties": {
                "field": {"type": "string", "description": "the field at fault"},
                "rule": {"type": "string", "description": "the rule it breaks"},
                "message": {"type": "string"},
            },
            "required": ["field", "rule", "message"],
        }
    },
    "required": ["error"],
}
# Ingest errors say it again where the Segment and RudderStack libraries read it.
_INGEST_ERROR = {
    **_ERROR,
    "properties": {
        **_ERROR["properties"],
        "code": {"type": "string", "description": "the rule, as 'error.rule'"},
        "message": {"type": "string", "description": "'<field>: <message>'"},
    },
    "required": ["error", "code", "message"],
}


def _error(description: str, schema: dict[str, Any] = _ERROR) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_INGEST_ERRORS = {
    "400": _error("The call breaks a rule: the error names the field and the rule.", _INGEST_ERROR),
    "401": _error("The key is missing or wrong.", _INGEST_ERROR),
    "403": _error(
        "From a web page: its origin is not one serve allows (rule 'cors'), it sent the write "
        "or admin key (rule 'secret'); or the client key sent what the workspace's browser "
        "settings do not let it (rule 'browser', naming the field).",
        _INGEST_ERROR,
    ),
    "413": _error("The body is too large, or inflates to more than the limit.", _INGEST_ERROR),
    "415": _error("A Content-Encoding other than gzip, deflate or identity.", _INGEST_ERROR),
    "429": _error(
        "Too much is queued, or (the client key) this address sent more than the browser "
        "rate allows (rule 'rate'): retry after the Retry-After seconds.",
        _INGEST_ERROR,
    ),
    "503": _error("The events could not be stored; nothing was kept: retry.", _INGEST_ERROR),
}

_COUNTED = {
    "type": "object",
    "properties": {
        "accepted": {"type": "integer", "minimum": 0},
        "rejected": {
            "type": "array",
            "description": "the calls of a batch that break a rule, each with its index",
            "items": {"type": "object", "required": ["index", "field", "rule", "message"]},
        },
    },
    "required": ["accepted"],
}
_ACCEPTED = {
    "description": "Stored on disk: the events will be processed.",
    "content": {"application/json": {"schema": _COUNTED}},
}

# Ids are indexed: at most 255 characters, and never a NUL (no backend keeps one). Absent
# and null are the same.
_NAME = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[^\\x00]*$"}
_ID = {
    "description": "a string, or a whole number (taken as its digits); not only spaces",
    "anyOf": [_NAME, {"type": "integer"}, {"type": "null"}],
}
_TEXT = {"type": "string", "maxLength": 255, "pattern": "^[^\\x00]*$"}
_GIVEN_ID = {
    "description": "a string, or a whole number (taken as its digits); not only spaces",
    "anyOf": [_NAME, {"type": "integer"}],
}
_DATA = {
    "description": "no NUL character in a key or a text, whole numbers within 64 bits, at "
    "most 32 levels deep; absent or null is empty",
    "type": ["object", "null"],
}
_SEGMENT_IDS = {
    "userId": _ID,
    "anonymousId": _ID,
    "timestamp": {
        "description": "when it happened (the time it arrived, if absent)",
        "anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}],
    },
    "messageId": {
        "description": "a retry with the same id is ignored",
        "anyOf": [_NAME, {"type": "null"}],
    },
    "context": {
        "description": "as Segment sends it: 'ip', 'userAgent', 'timezone', 'locale' (texts) "
        "and 'traits' are kept on the event, the rest is not read; 'timezone' and 'locale' "
        "fill the profile's traits of those names when it has none, and 'traits' fill the "
        "traits it lacks (on an identify, they are traits of the call)"
    },
    "sentAt": {"description": "when the client sent the call (its clock)"},
    "originalTimestamp": {
        "description": "when it happened, by the client's clock: without a timestamp, the "
        "event's time is the time it arrived less (sentAt - originalTimestamp)"
    },
}

_TRACK = {
    "type": "object",
    "description": "The profile is named by the identity the event's definition says "
    "(userId, anonymousId or properties.email); an event without a definition needs a "
    "userId or an anonymousId. Defined events' properties must fit their JSON Schema.",
    "required": ["event"],
    "properties": {**_SEGMENT_IDS, "event": _NAME, "properties": _DATA},
}
_IDENTIFY = {
    "type": "object",
    "description": "Needs a userId or an anonymousId; naming both makes them one profile.",
    "properties": {**_SEGMENT_IDS, "traits": _DATA},
    "anyOf": [
        {"required": ["userId"], "properties": {"userId": {"not": {"type": "null"}}}},
        {"required": ["anonymousId"], "properties": {"anonymousId": {"not": {"type": "null"}}}},
    ],
}
_VIEWED = {
    "type": "object",
    "description": "A page (or screen) viewed: the event whose definition says 'page: <name>' "
    "('screen: <name>'), else the event 'page' ('screen'). 'name' and 'category' are in its "
    "properties too. Named by the identity its definition says.",
    "properties": {
        **_SEGMENT_IDS,
        "name": {"anyOf": [_TEXT, {"type": "null"}]},
        "category": {"anyOf": [_TEXT, {"type": "null"}]},
        "properties": _DATA,
    },
    "anyOf": _IDENTIFY["anyOf"],
}
_ALIAS = {
    "type": "object",
    "description": "The profile of 'previousId' (an anonymous id, or an older user id) merges "
    "into the profile of 'userId', as an identify with both ids does.",
    "required": ["userId", "previousId"],
    "properties": {**_SEGMENT_IDS, "userId": _GIVEN_ID, "previousId": _GIVEN_ID},
}
_GROUP = {
    "type": "object",
    "description": "The profile belongs to the account 'groupId' from now on (the latest group "
    "call wins), and the account's traits take 'traits' key by key (null removes one). A call "
    "that changes a trait records the event 'account_updated' on this profile, its properties "
    "the changed traits; the account's other members get no event, and read the new traits "
    "as 'account' from their next step on.",
    "required": ["groupId"],
    "properties": {**_SEGMENT_IDS, "groupId": _GIVEN_ID, "traits": _DATA},
    "anyOf": _IDENTIFY["anyOf"],
}
_BATCH = {
    "type": "object",
    "required": ["batch"],
    "properties": {
        "batch": {
            "type": "array",
            "maxItems": 500,
            "description": "track, identify, page, screen, alias and group calls, each as its own "
            "path (/v1/track, ...) takes it, with its 'type', of at most 32 KiB each. Each call "
            "is checked alone: those that break a rule are listed in 'rejected', the others kept.",
            "items": {},
        }
    },
}


_KEYS = (
    "The write, admin or client key: in the Authorization header, else in the body's "
    "'writeKey' (as Segment's browser library sends it)"
)
_ORIGIN = {
    "name": "Origin",
    "in": "header",
    "required": False,
    "description": "Sent by web pages: one of the origins serve --cors-origin allows, whose "
    "answers carry Access-Control-Allow-Origin; a page may only send with the client key.",
    "schema": {"type": "string"},
}
_BEACON_KEY = {
    "name": "writeKey",
    "in": "query",
    "required": False,
    "description": "The key, as RudderStack's beacon queue sends it.",
    "schema": {"type": "string"},
}
_PREFLIGHT = {
    "summary": "A web page's CORS preflight",
    "parameters": [{**_ORIGIN, "required": True}],
    "responses": {
        "204": {"description": "The origin is allowed: the CORS headers say what it may send."},
        "403": _error("The origin is not one serve allows (rule 'cors'); no CORS headers."),
        "405": _error("No Origin: not a preflight (the path takes POST)."),
    },
}


def _post(
    summary: str, schema: dict[str, Any], rejected: str | None = None, *, beacon: bool = False
) -> dict[str, Any]:
    errors = dict(_INGEST_ERRORS)
    accepted = {"202": _ACCEPTED}
    if rejected is not None:  # a batch: 200, which RudderStack's Python library needs
        content = {"application/json": {"schema": {"anyOf": [_INGEST_ERROR, _COUNTED]}}}
        errors["400"] = {"description": rejected, "content": content}
        errors["403"] = {**errors["403"], "content": content}
        accepted = {"200": _ACCEPTED}
    # text/plain: how Segment's browser library sends JSON, which needs no preflight.
    body = {"application/json": {"schema": schema}, "text/plain": {"schema": schema}}
    return {
        "post": {
            "summary": summary,
            "description": f"{_KEYS}{', or the writeKey query parameter' if beacon else ''}.",
            "security": [{"bearer": []}, {"basic": []}, {}],
            "parameters": [_ORIGIN, *([_BEACON_KEY] if beacon else [])],
            "requestBody": {"required": True, "content": body},
            "responses": {**accepted, **errors},
        },
        "options": _PREFLIGHT,
    }


def _short(long: str, library: str) -> dict[str, Any]:
    """A browser library's path for what ``long`` takes."""
    found = _INGEST[long]
    post = {**found["post"], "summary": f"{found['post']['summary']} ({library})"}
    return {**found, "post": post}


def _get(
    summary: str, parameters: list[dict[str, Any]] | None = None, bad: str | None = None
) -> dict[str, Any]:
    """A GET with the admin key; ``bad`` says when it answers 400, if it can."""
    responses = {
        "200": {"description": "OK", "content": {"application/json": {}}},
        "401": _error("The admin key is missing or wrong."),
        "404": _error("Not found."),
    }
    if bad is not None:
        responses["400"] = _error(bad)
    return {
        "get": {
            "summary": summary,
            "security": [{"bearer": []}, {"basic": []}],
            "parameters": parameters or [],
            "responses": dict(sorted(responses.items())),
        }
    }


def _as_csv(path: dict[str, Any]) -> dict[str, Any]:
    """A GET whose answer is CSV."""
    path["get"]["responses"]["200"] = {"description": "OK", "content": {"text/csv": {}}}
    return path


def _path_param(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": schema or {"type": "string"}}


def _experiment_operation(summary: str, required: list[str]) -> dict[str, Any]:
    """An operator's decision on an experiment step (see journeyman.experiments_api)."""
    schema = {
        "type": "object",
        "required": required,
        "additionalProperties": False,
        "properties": {
            "variant": {"type": "string", "description": "a variant of the step"},
            "by": {"type": "string", "description": "who decides (an email)"},
        },
    }
    return {
        "post": {
            "summary": summary,
            "security": [{"bearer": []}, {"basic": []}],
            "parameters": [
                _path_param("name"),
                {"name": "step", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": {
                "200": {
                    "description": "The decision as stored: variant, how, by, at, the data",
                    "content": {"application/json": {}},
                },
                "400": _error("A body, 'variant' or 'by' that is not valid (the field is named)."),
                "401": _error("The admin key is missing or wrong."),
                "404": _error("No such journey ('name') or experiment step ('step')."),
                "503": _error("The decision could not be stored: retry."),
            },
        }
    }


def _query(name: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema or {"type": "string"}}


# Numbers in paths and queries are ASCII digits. Ids and versions over 2**63 - 1 are kept
# by no store: such a one names nothing (404).
_VERSION = {"type": "integer", "minimum": 1}
_LIMIT = _query("limit", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100})
_BAD_LIMIT = "'limit' is not a whole number from 1 to 1000."
_STATUSES = ["accepted", "duplicate", "rejected", "unavailable"]


def _status(description: str, *statuses: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "required": ["status", "storage"],
        "properties": {"status": {"enum": list(statuses)}, "storage": {"type": "string"}},
    }
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _text(description: str, media_type: str) -> dict[str, Any]:
    return {"description": description, "content": {media_type: {"schema": {"type": "string"}}}}


# What PUT /v1/workspace answers: the plan, and every problem, warnings included.
_PROBLEMS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["file", "line", "severity", "code", "message"],
        "properties": {
            "file": {"type": "string"},
            "line": {"type": "integer"},
            "severity": {
                "type": "string",
                "enum": ["error", "warning"],
                "description": "errors block publishing; warnings do not",
            },
            "code": {
                "type": "string",
                "description": "the check that found it (docs/workspace.md)",
            },
            "message": {"type": "string", "description": "the line `journeyman validate` prints"},
        },
    },
}


def _published(description: str, plan: bool) -> dict[str, Any]:
    properties: dict[str, Any] = {"published": {"type": "boolean"}, "problems": _PROBLEMS}
    if plan:
        properties["plan"] = {"type": "object"}
    schema = {"type": "object", "required": list(properties), "properties": properties}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_BATCH_REJECTED = (
    "The body breaks a rule (the error names it), or every call does (each is "
    "listed in 'rejected', and 'accepted' is 0)."
)
_INGEST: dict[str, Any] = {
    "/v1/track": _post("Record what a profile did", _TRACK),
    "/v1/identify": _post("Set a profile's traits", _IDENTIFY),
    "/v1/page": _post("Record a page of a website that a profile viewed", _VIEWED),
    "/v1/screen": _post("Record a screen of an app that a profile viewed", _VIEWED),
    "/v1/alias": _post("Merge a previous id's profile into a user's", _ALIAS),
    "/v1/group": _post("Attach a profile to an account, and set the account's traits", _GROUP),
    "/v1/batch": _post(
        "Up to 500 track, identify, page, screen, alias and group calls (512 KiB)",
        _BATCH,
        _BATCH_REJECTED,
    ),
}
# Segment's analytics.js posts each call to the path of its type's first letter.
_LETTERS = (
    ("/v1/t", "track"),
    ("/v1/i", "identify"),
    ("/v1/p", "page"),
    ("/v1/s", "screen"),
    ("/v1/a", "alias"),
    ("/v1/g", "group"),
    ("/v1/b", "batch"),
)

# Who gives a pause, resume, stop or publish: kept in the audit ("api" when not given).
_WHO: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": 100,
    "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*\\S[^\\x00-\\x1f\\x7f-\\x9f]*$",
    "description": "Who gives the call, kept in the journey's audit; 'api' if not given",
}
_WHO_BODY: dict[str, Any] = {"type": "object", "properties": {"by": _WHO}}

SPEC: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {
        "title": "journeyman",
        "version": "1",
        "description": "Ingest in the Segment shape, and the admin API of a journeyman server.",
    },
    "components": {
        "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "basic": {"type": "http", "scheme": "basic", "description": "the key as user name"},
        }
    },
    "paths": {
        **_INGEST,
        **{path: _short(f"/v1/{call}", "Segment's analytics.js") for path, call in _LETTERS},
        "/beacon/v1/batch": _post(
            "A batch from RudderStack's beacon queue", _BATCH, _BATCH_REJECTED, beacon=True
        ),
        "/v1/journeys": _get(
            "Every published journey, and those removed from the workspace (state 'removed')"
        ),
        "/v1/journeys/{name}": _get(
            "One journey (or its version 'version'), its definition and live counts per step: "
            "of that version's instances, or of every version with version=all "
            "('counts_version' says which); and its 'audit', newest first: who paused, "
            "resumed, stopped or published it, when, through what, and what it did",
            [
                _path_param("name"),
                _query("version", {"type": "string", "pattern": "^([0-9]+|all)$"}),
            ],
            "'version' is not a number or 'all'.",
        ),
        "/v1/journeys/{name}/report": _get(
            "A journey's report from its counters: entries, ends by end state, and per goal "
            "conversions, rate, value, time to convert (median and p90 from a histogram) and, "
            "per split arm, lift against the holdout arm (Wald interval of the difference, "
            "log interval of the ratio, pooled two-proportion z-test p-value, at 95%); per "
            "step its numbers as the console's graph gives them (entered, waiting, passed, "
            "left, skipped, capped, dropped, failed), reached (the funnel) and outcomes "
            "(per arm too), live to the last commit, and, for a step that sends, what "
            "customers did with its messages (sent, delivered, opened, clicked..., each "
            "message once) in all and per arm or experiment variant; per goal the "
            "cumulative conversion rate by day of entry and arm with its 95% Wilson "
            "interval; of the latest version, version N, or every version with version=all; "
            "of the entries of the days from..to; days are days in 'timezone' (an IANA zone, "
            "default UTC); as CSV with format=csv",
            [
                _path_param("name"),
                _query("version", {"type": "string", "pattern": "^([0-9]+|all)$"}),
                _query("from", {"type": "string", "format": "date"}),
                _query("to", {"type": "string", "format": "date"}),
                _query("timezone", {"type": "string", "example": "Europe/Paris"}),
                _query("format", {"type": "string", "enum": ["json", "csv"]}),
            ],
            "'version', 'from', 'to', 'timezone' or 'format' is not valid, or 'from' is "
            "after 'to'.",
        ),
        "/v1/journeys/{name}/report.csv": _as_csv(
            _get(
                "The journey's report as CSV (columns section,name,arm,day,metric,value), a "
                "download named {journey}-report.csv; the same parameters as the report",
                [
                    _path_param("name"),
                    _query("version", {"type": "string", "pattern": "^([0-9]+|all)$"}),
                    _query("from", {"type": "string", "format": "date"}),
                    _query("to", {"type": "string", "format": "date"}),
                    _query("timezone", {"type": "string", "example": "Europe/Paris"}),
                ],
                "'version', 'from', 'to' or 'timezone' is not valid, or 'from' is after 'to'.",
            )
        ),
        "/v1/journeys/{name}/experiments/{step}/winner": _experiment_operation(
            "Pick an experiment's winner by hand: every new profile at the step gets it",
            ["variant", "by"],
        ),
        "/v1/journeys/{name}/experiments/{step}/stop": _experiment_operation(
            "Stop an experiment: every new profile gets 'variant', else the first variant",
            ["by"],
        ),
        "/v1/journeys/{name}/runs/{id}/cancel": {
            "post": {
                "summary": "Cancel a scheduled run: the page in flight is its last",
                "security": [{"bearer": []}, {"basic": []}],
                "parameters": [_path_param("name"), _path_param("id")],
                "responses": {
                    "200": {
                        "description": "Cancelled: the run, with state, entered, total, rate",
                        "content": {"application/json": {}},
                    },
                    "401": _error("The admin key is missing or wrong."),
                    "404": _error("The journey has no such run."),
                    "409": _error("The run is over already (done or cancelled)."),
                },
            }
        },
        "/v1/journeys/{name}/{command}": {
            "post": {
                "summary": "Pause, resume or stop a journey",
                "security": [{"bearer": []}, {"basic": []}],
                "parameters": [
                    _path_param("name"),
                    {
                        "name": "command",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": ["pause", "resume", "stop"]},
                    },
                ],
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _WHO_BODY}},
                },
                "responses": {
                    "200": {
                        "description": (
                            "Done: resume and stop say how many instances they reached "
                            "(with a bus, once the commands are stored in JetStream)"
                        ),
                        "content": {"application/json": {}},
                    },
                    "401": _error("The admin key is missing or wrong."),
                    "400": _error(
                        "The body is not a JSON object, or 'by' is blank, over 100 characters or "
                        "holds a control character."
                    ),
                    "404": _error("No such journey or command."),
                    "429": _error("Too much is queued: retry (a repeated command is safe)."),
                    "503": _error(
                        "Not every instance could be reached: retry (a repeated command is safe)."
                    ),
                },
            }
        },
        "/v1/workspace": {
            "put": {
                "summary": "Validate and publish a workspace (dry_run=true: plan only)",
                "security": [{"bearer": []}, {"basic": []}],
                "parameters": [
                    _query("dry_run", {"type": "string", "enum": ["true", "false", "1", "0"]})
                ],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {
                            "schema": {
                                "type": "object",
                                "required": ["files"],
                                "properties": {
                                    "files": {
                                        "type": "object",
                                        "additionalProperties": {"type": "string"},
                                    },
                                    "by": _WHO,
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": _published("The plan, and the workspace's warnings", plan=True),
                    "400": _error(
                        "The body is not a map of file names to text, 'by' is blank, over 100 "
                        "characters or holds a control character, or 'dry_run' is not true, "
                        "false, 1 or 0."
                    ),
                    "401": _error("The admin key is missing or wrong."),
                    "413": _error("The body is over 8 MiB."),
                    "422": _published("The workspace has errors: nothing was published", False),
                },
            }
        },
        "/v1/journeys/{name}/steps/{step}": _get(
            "One step of a journey ('entry' for its entry): definition, outcome counts, the "
            "latest records there and, for a send, its template rendered for the latest "
            "profile that reached it (or a sample profile)",
            [_path_param("name"), _path_param("step")],
        ),
        "/v1/journeys/{name}/versions/{version}": _get(
            "A published version's document; 'against' another version adds a unified diff",
            [
                _path_param("name"),
                _path_param("version", _VERSION),
                _query("against", {"type": "integer", "minimum": 0}),
            ],
            "'against' is not a version number.",
        ),
        "/v1/profiles": _get(
            "Find profiles, a page at a time: the ids that the userId, anonymousId, email or "
            "phone in 'q' leads to, then every profile whose id, email or anonymousId starts "
            "with 'q', or a word of whose name does (firstName, lastName, name), case "
            "ignored; every profile by id without 'q'. Pass 'after' the 'next' of the page "
            "before (null on the last page)",
            [_query("q"), _query("after"), _LIMIT],
            _BAD_LIMIT,
        ),
        "/v1/profiles/{profile_id}": _get(
            "A profile: traits, its account (id, traits, when attached; null without one), "
            "recent events, its segments (since when), every instance with its trace "
            "(the id percent-encoded: it may hold '/', '?', '#', '%' or spaces)",
            [_path_param("profile_id")],
        ),
        "/v1/segments": _get(
            "Every segment of the published workspace: name, description, condition and "
            "how many profiles are in it now"
        ),
        "/v1/segments/{name}": _get(
            "One segment: name, description, condition, size now; its size over the last 30 "
            "days ('sizes': 'start', the size at 'since', and 'points', the size at the end "
            "of each UTC hour that had an entry or an exit, with how many entered and left "
            "then); its latest backfill ('backfill': state running, done or superseded, done "
            "of total profiles, percent, rate in profiles a second, eta in seconds; null "
            "before any) and the few before it ('backfills')",
            [_path_param("name")],
        ),
        "/v1/segments/{name}/backfill": {
            "post": {
                "summary": "Backfill a segment again: compute it for every stored profile "
                "from the events and traits the store holds (after an import of old events, "
                "say); its members get 'segment_entered' or 'segment_exited', and no journey "
                "is entered, resumed or exited by them",
                "security": [{"bearer": []}, {"basic": []}],
                "parameters": [_path_param("name")],
                "responses": {
                    "202": {
                        "description": "Started: the backfill, with state, done, total, rate",
                        "content": {"application/json": {}},
                    },
                    "401": _error("The admin key is missing or wrong."),
                    "404": _error("No such segment."),
                    "409": _error("The segment is a list: it has no condition to compute."),
                },
            }
        },
        "/v1/segments/{name}/members": _get(
            "A page of a segment's members (profile id, since when), by profile id: pass "
            "'after' the last id of the page before ('next' of its answer)",
            [_path_param("name"), _query("after"), _LIMIT],
            _BAD_LIMIT,
        ),
        "/v1/messages": _get(
            "The message log",
            [_query("profile"), _query("journey"), _query("status"), _LIMIT],
            _BAD_LIMIT,
        ),
        "/v1/mail": _get(
            "The emails the built-in mail catcher caught (serve --catcher), newest first"
        ),
        "/v1/events": _get(
            "The live tail of ingest: the latest accepted, duplicate, rejected (with the "
            "reason) and unavailable calls, newest first; pass 'after' the last seq seen",
            [
                _query("event"),
                _query("profile"),
                _query("status", {"type": "string", "enum": _STATUSES}),
                _query("after", {"type": "integer", "minimum": 0, "default": 0}),
                _LIMIT,
            ],
            "'limit' is not a whole number from 1 to 1000, 'after' is not a whole number, or "
            "'status' is not one of the four.",
        ),
        "/healthz": {
            "get": {
                "summary": "Liveness: always 200 while the process runs; status 'degraded' "
                "and storage 'failing: ...' while commits fail",
                "responses": {"200": _status("OK", "ok", "degraded")},
            }
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: 200 when the store answers and the last commits were "
                "stored, else 503 with the reason",
                "responses": {
                    "200": _status("Ready", "ready"),
                    "503": _status("Not ready: storage is failing", "unready"),
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "responses": {"200": _text("OK", "text/plain")},
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    },
}
SPEC["paths"]["/v1/workspace"].update(
    _get(
        "The workspace folder the server started from, read again now: its problems and "
        "the plan a publish would carry out; the workspace version running, with where "
        "it came from ('running'); and the latest publishes, who made them and when "
        "('publishes', newest first)"
    )
)
_ADMIN: list[dict[str, list[str]]] = [{"bearer": []}, {"basic": []}]
_LETTER_ID = _path_param("id", {"type": "integer", "minimum": 0})
_KEY = _error("The admin key is missing or wrong.")
# Rows of any shape: each is checked as ingest checks a call, and refused alone (any body
# but an empty one is a job).
_ROWS: dict[str, Any] = {}
_KINDS = {"type": "string", "enum": ["events", "profiles"]}
SPEC["paths"]["/v1/import"] = {
    "post": {
        "summary": (
            "Import profiles or events: the body holds the rows (NDJSON, one Segment call a "
            "line; or CSV with format=csv), gzip or deflate allowed. Spooled to disk as it "
            "arrives, then run in the background as a job: 202 with its id and its url. Rows "
            "are checked as ingest checks calls; rejected rows and their reasons are in the "
            "job. Imported events go in their profiles' history and start no journey unless "
            "trigger=true; rows whose messageId is kept already are skipped."
        ),
        "security": _ADMIN,
        "parameters": [
            {
                **_query("kind", {"type": "string", "enum": ["events", "profiles"]}),
                "required": True,
            },
            _query("format", {"type": "string", "enum": ["ndjson", "csv"], "default": "ndjson"}),
            _query("trigger", {"type": "string", "enum": ["true", "false", "1", "0"]}),
            _query("key", {"type": "string", "minLength": 1, "maxLength": 255}),
        ],
        "requestBody": {
            "required": True,
            "content": {"application/x-ndjson": {"schema": _ROWS}, "text/csv": {"schema": _ROWS}},
        },
        "responses": {
            "202": {
                "description": "The job, running (see GET /v1/imports/{id})",
                "content": {"application/json": {}},
            },
            "400": _error(
                "A query value out of its rules (kind, format, trigger, key), an empty body, "
                "or a body that is not what its Content-Encoding says."
            ),
            "401": _KEY,
            "409": _error("The server runs with --bus: import with `journeyman import --db`."),
            "413": _error("The body inflates to more than 8 GiB."),
            "415": _error("A Content-Encoding other than gzip, deflate or identity."),
        },
    }
}
SPEC["paths"]["/v1/imports"] = {
    "get": {
        "summary": "The latest import jobs (up to 50), newest first",
        "security": _ADMIN,
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {}}},
            "401": _KEY,
        },
    }
}
SPEC["paths"]["/v1/imports/{id}"] = {
    "get": {
        "summary": (
            "One import job: status (running, done, failed or interrupted), rows read, "
            "imported, duplicate and rejected, the error, and the first 100 rejected rows "
            "with their reasons"
        ),
        "security": _ADMIN,
        "parameters": [_path_param("id")],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {}}},
            "401": _KEY,
            "404": _error("No such import job."),
        },
    }
}
SPEC["paths"]["/v1/dead-letters"] = {
    "get": {
        "summary": (
            "The messages workers could not apply after several tries, newest first, with "
            "the error, the partition, the attempts and the message as it came; 'count' is "
            "how many are kept"
        ),
        "security": _ADMIN,
        "parameters": [_LIMIT],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {}}},
            "400": _error("'limit' is not a whole number from 1 to 1000."),
            "401": _KEY,
        },
    }
}
SPEC["paths"]["/v1/dead-letters/{id}"] = {
    "delete": {
        "summary": "Give a dead letter up for good",
        "security": _ADMIN,
        "parameters": [_LETTER_ID],
        "responses": {
            "200": {"description": "Deleted", "content": {"application/json": {}}},
            "401": _KEY,
            "404": _error("No such dead letter."),
        },
    }
}
SPEC["paths"]["/v1/dead-letters/{id}/replay"] = {
    "post": {
        "summary": (
            "Send a dead letter's message on again and forget the dead letter: with a bus, "
            "published again to its partition; without one, applied at once"
        ),
        "security": _ADMIN,
        "parameters": [_LETTER_ID],
        "responses": {
            "200": {
                "description": "Applied (without a bus): the results of its triggers",
                "content": {"application/json": {}},
            },
            "202": {
                "description": "Published again to its partition (with a bus)",
                "content": {"application/json": {}},
            },
            "401": _KEY,
            "404": _error("No such dead letter."),
            "409": _error("The message failed again (without a bus): the dead letter is kept."),
            "503": _error(
                "The bus or the store is away, or too much is queued: retry (the dead letter stays)"
            ),
        },
    }
}
# A profile's consent (journeyman.consent_admin): read it, change it as an operator.
_PROFILE_ID = _path_param("profile_id", {"type": "string", "minLength": 1})
_LINE = "^[^\\x00-\\x1f\\x7f-\\x9f]*$"  # no control characters
_ADDRESS = {
    "type": "string",
    "minLength": 1,
    "maxLength": 320,
    "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*\\S[^\\x00-\\x1f\\x7f-\\x9f]*$",
}
_BY = {
    "type": "string",
    "minLength": 1,
    "maxLength": 200,
    "pattern": "^[^\\x00-\\x1f\\x7f-\\x9f]*\\S[^\\x00-\\x1f\\x7f-\\x9f]*$",
    "description": "who makes the change (an operator's email): shown in the audit",
}
_SWITCHES = {"type": "object", "minProperties": 1, "additionalProperties": {"type": "boolean"}}
_RECORDED = {
    "type": "object",
    "required": ["recorded"],
    "properties": {
        "recorded": {
            "type": "array",
            "description": "the consent events recorded, as the audit shows them",
            "items": {"type": "object"},
        }
    },
}


def _consent_change(summary: str, body: dict[str, Any] | None, bad: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": _ADMIN,
        "parameters": [_PROFILE_ID],
        "responses": {
            "200": {
                "description": "Nothing to change: nothing was recorded",
                "content": {"application/json": {"schema": _RECORDED}},
            },
            "202": {
                "description": "Recorded: committed (serve) or stored in the bus (workers)",
                "content": {"application/json": {"schema": _RECORDED}},
            },
            "400": _error(bad + " Nothing changed."),
            "401": _KEY,
            "404": _error("No such profile (or, for a DELETE, the address is not suppressed)."),
            "413": _error("The body is over 16 KiB."),
            "429": _error("Too much is queued: retry after the Retry-After seconds."),
            "503": _error("The store or the bus is away; nothing changed: retry."),
        },
    }
    if body is not None:
        content = {"application/json": {"schema": body}}
        operation["requestBody"] = {"required": True, "content": content}
    return operation


SPEC["paths"]["/v1/profiles/{profile_id}/consent"] = {
    "get": {
        "summary": (
            "A profile's consent: each topic (subscribed, and whether by its own choice or "
            "the topic's default), each channel, unsubscribed from all, the suppression "
            "list, and the audit of who changed what, when (newest first). The path's last "
            "segment is matched as sent: a profile id may hold '/'"
        ),
        "security": _ADMIN,
        "parameters": [_PROFILE_ID],
        "responses": {
            "200": {"description": "OK", "content": {"application/json": {}}},
            "401": _KEY,
            "404": _error("No such profile."),
        },
    },
    "patch": _consent_change(
        "Change a profile's consent as an operator: records 'unsubscribed' and "
        "'resubscribed' events (source 'operator', with 'by') for what changes",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["by"],
            "anyOf": [{"required": [name]} for name in ("topics", "channels", "unsubscribed")],
            "properties": {
                "topics": {**_SWITCHES, "description": "topic name -> subscribed"},
                "channels": {**_SWITCHES, "description": "channel -> consent (false: nothing)"},
                "unsubscribed": {"type": "boolean", "description": "from everything"},
                "by": _BY,
            },
        },
        "The body breaks a rule (an unknown topic or channel, a value that is no boolean, "
        "no 'by'): the error names the field and the rule.",
    ),
}
SPEC["paths"]["/v1/profiles/{profile_id}/suppressions"] = {
    "post": _consent_change(
        "Put an address on the profile's suppression list, which no message passes, "
        "transactional or not: records 'address_suppressed' (source 'operator')",
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["address", "by"],
            "properties": {
                "address": _ADDRESS,
                "reason": {"type": "string", "maxLength": 200, "pattern": _LINE},
                "by": _BY,
            },
        },
        "The body breaks a rule: the error names the field and the rule.",
    )
}
SPEC["paths"]["/v1/profiles/{profile_id}/suppressions/{address}"] = {
    "delete": {
        **_consent_change(
            "Take an address off the profile's suppression list: records "
            "'address_unsuppressed' (source 'operator', with 'by')",
            None,
            "'by' is missing, repeated, or breaks a rule.",
        ),
        "parameters": [
            _PROFILE_ID,
            _path_param("address", _ADDRESS),
            {"name": "by", "in": "query", "required": True, "schema": _BY},
        ],
    }
}
# The links tracked email carries (see docs/http-api.md, "Opens and clicks"): no key; the
# token is signed by the deployment, and a bad one changes nothing.
_TOKEN = _path_param("token", {"type": "string", "minLength": 1, "maxLength": 1024})
_NOT_NOW = _text("Could not be recorded now (the store or the bus is away): retry", "text/plain")
_GIF = {"type": "string", "format": "binary"}
SPEC["paths"]["/c/{token}"] = {
    "get": {
        "summary": (
            "A click on a link of a tracked email: records message_clicked, then redirects to "
            "the link's address as the email was written"
        ),
        "parameters": [_TOKEN],
        "responses": {
            "302": {
                "description": "Recorded: go to the original address (Location)",
                "headers": {"Location": {"schema": {"type": "string"}}},
            },
            "404": _text(
                "The token is forged, altered or cut short, or names no link that was sent: "
                "nothing recorded",
                "text/plain",
            ),
            "503": _NOT_NOW,
        },
    }
}
SPEC["paths"]["/o/{token}"] = {
    "get": {
        "summary": (
            "The open pixel of a tracked email: records message_opened (machine: true for a "
            "mail proxy's fetch) and answers a 1x1 transparent GIF"
        ),
        "parameters": [_TOKEN],
        "responses": {
            "200": {"description": "Recorded", "content": {"image/gif": {"schema": _GIF}}},
            "404": {
                "description": "A bad token: the same GIF, nothing recorded",
                "content": {"image/gif": {"schema": _GIF}},
            },
            "503": {
                "description": "Could not be recorded now: the same GIF, and Retry-After",
                "content": {"image/gif": {"schema": _GIF}},
            },
        },
    }
}

# The recipient's links (no key: the signed token is the credential).
_PAGE = {"schema": {"type": "string"}}


def _page(description: str) -> dict[str, Any]:
    # A path the routes do not take (a token with a slash) is answered by the server's 404.
    return {"description": description, "content": {"text/html": _PAGE, "text/plain": _PAGE}}


def _keyless(summary: str, *extra: tuple[str, str]) -> dict[str, Any]:
    responses = {"200": _page("OK: the page"), "404": _page("The link is not valid.")}
    responses.update({status: _page(description) for status, description in extra})
    return {"summary": summary, "parameters": [_TOKEN], "responses": responses}


_FORM = {
    "required": False,
    "content": {"application/x-www-form-urlencoded": {"schema": {"type": "object"}}},
}
_STORED = (
    ("400", "The form did not arrive whole."),
    ("413", "The form is larger than 16 KiB or has more than 500 fields."),
    ("429", "Too much is queued: retry after the Retry-After seconds."),
    ("503", "Not stored: retry after the Retry-After seconds."),
)
SPEC["paths"]["/u/{token}"] = {
    "get": _keyless("A page that asks the recipient to confirm an unsubscribe, with a button"),
    "post": {
        **_keyless(
            "One-click unsubscribe (RFC 8058, body List-Unsubscribe=One-Click): unsubscribes "
            "the recipient from the message's topic (its channel, for a message without one) "
            "by recording an 'unsubscribed' event; 200 once it is stored; idempotent",
            *_STORED,
        ),
        "requestBody": _FORM,
    },
}
SPEC["paths"]["/preferences/{token}"] = {
    "get": _keyless(
        "The profile's preference page: its topics per channel, receive nothing by a "
        "channel, unsubscribe from all"
    ),
    "post": {
        **_keyless(
            "Save the preference form (fields 'topic', once per topic wanted, 'nothing', once "
            "per channel to receive nothing by, and 'all=yes'): records 'unsubscribed' and "
            "'resubscribed' events for what changed",
            *_STORED,
        ),
        "requestBody": _FORM,
    },
}
SPEC["paths"]["/docs"] = {
    "get": {
        "summary": "This API, as a page to read",
        "responses": {"200": _text("OK", "text/html")},
    }
}

# Provider feedback (journeyman.hooks): keyless, checked by the provider's signature.
_HOOK_ERRORS = {
    "404": _error("No channel of that name takes this feedback (or no such message)."),
    "413": _error("The body is too large."),
    "429": _error("Too much is queued: the provider should retry."),
    "503": _error("The events could not be stored; nothing was kept: the provider retries."),
}
_ESP_ITEM = {
    "type": "object",
    "required": ["type", "message"],
    "properties": {
        "type": {
            "type": "string",
            "enum": ["bounce", "complaint", "delivered", "open", "click", "unsubscribe"],
        },
        "message": {"type": "string", "description": "the message key (X-Journeyman-Key)"},
        "id": {"type": "string", "description": "the provider's id of the report"},
        "address": {"type": "string", "description": "default: the address it went to"},
        "bounce": {"type": "string", "enum": ["hard", "soft"], "description": "for a bounce"},
        "reason": {"type": "string"},
        "url": {"type": "string", "description": "for a click"},
        "user_agent": {"type": "string"},
        "machine": {"type": "boolean", "description": "an open by a mail proxy"},
        "timestamp": {
            "description": "ISO 8601 or Unix seconds; default now",
            "anyOf": [{"type": "string", "format": "date-time"}, {"type": "number"}],
        },
    },
}
_FORM = {"type": "object", "additionalProperties": {"type": "string"}}
_SIGNED = "X-Twilio-Signature: base64 HMAC-SHA1 of the public URL and the sorted form fields"
SPEC["paths"]["/hooks/email/{channel}"] = {
    "post": {
        "summary": (
            "An email service's reports about our messages (bounces, complaints, deliveries, "
            "opens, clicks), signed with X-Journeyman-Signature: sha256=<hex HMAC-SHA256 of "
            "the body under the channel's feedback_secret>; each becomes a reaction event"
        ),
        "security": [],
        "parameters": [
            _path_param("channel"),
            {
                "name": "X-Journeyman-Signature",
                "in": "header",
                "required": True,
                "schema": {"type": "string"},
            },
        ],
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": {"type": "array", "items": _ESP_ITEM}}},
        },
        "responses": {
            "200": {
                "description": "Stored: how many reports were new, repeats, and about "
                "messages this channel never sent (skipped)",
                "content": {
                    "application/json": {
                        "schema": {
                            "type": "object",
                            "required": ["accepted", "duplicate", "skipped"],
                            "properties": {
                                k: {"type": "integer", "minimum": 0}
                                for k in ("accepted", "duplicate", "skipped")
                            },
                        }
                    }
                },
            },
            "400": _error("A report breaks a rule: the error names it, as [index].field."),
            "401": _error("The signature is missing or does not match; nothing was kept."),
            **_HOOK_ERRORS,
        },
    }
}
SPEC["paths"]["/hooks/twilio/{channel}/status/{token}"] = {
    "post": {
        "summary": (
            "Twilio's status callback for an SMS (the StatusCallback the SMS channel gave): "
            "delivered is message_sent, undelivered and failed are message_failed (and a hard "
            "bounce for an unreachable number); " + _SIGNED
        ),
        "security": [],
        "parameters": [_path_param("channel"), _path_param("token")],
        "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": _FORM}}},
        "responses": {
            "204": {"description": "Stored (or a status that is not final, ignored)"},
            "400": _error("The body is not a form."),
            "403": _error("The signature is missing or does not match; nothing was kept."),
            **_HOOK_ERRORS,
        },
    }
}
SPEC["paths"]["/hooks/twilio/{channel}/inbound"] = {
    "post": {
        "summary": (
            "An SMS to the channel's number: STOP, STOPALL, UNSUBSCRIBE, CANCEL, END or QUIT "
            "unsubscribes the profiles with that phone from SMS, START, YES or UNSTOP "
            "resubscribes them, HELP or INFO answers with the channel's help text; " + _SIGNED
        ),
        "security": [],
        "parameters": [_path_param("channel")],
        "requestBody": {"content": {"application/x-www-form-urlencoded": {"schema": _FORM}}},
        "responses": {
            "200": _text("TwiML: empty, or the help text as a Message", "application/xml"),
            "400": _error("The body is not a form."),
            "403": _error("The signature is missing or does not match; nothing was kept."),
            **_HOOK_ERRORS,
        },
    }
}


def docs_page() -> str:
    """The API reference as one self-contained HTML page (no script, no CDN)."""
    sections = []
    for path, operations in SPEC["paths"].items():
        for method, operation in operations.items():
            params = "".join(
                f"<li><code>{escape(p['name'])}</code> ({escape(p['in'])})</li>"
                for p in operation.get("parameters", [])
            )
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            schema = (
                f"<pre>{escape(json.dumps(body['schema'], indent=2))}</pre>"
                if body and "schema" in body
                else ""
            )
            answers = "".join(
                f"<li><code>{escape(code)}</code> {escape(r.get('description', ''))}</li>"
                for code, r in operation.get("responses", {}).items()
            )
            sections.append(
                f"<section><h2><code>{method.upper()} {escape(path)}</code></h2>"
                f"<p>{escape(operation.get('summary', ''))}</p>"
                + (f"<h3>Parameters</h3><ul>{params}</ul>" if params else "")
                + (f"<h3>Body</h3>{schema}" if schema else "")
                + f"<h3>Answers</h3><ul>{answers}</ul></section>"
            )
    info = SPEC["info"]
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f"<title>{escape(info['title'])} API</title>"
        "<style>body{font:16px/1.5 system-ui,sans-serif;max-width:60rem;margin:2rem auto;"
        "padding:0 1rem;color:#222}code,pre{font-family:ui-monospace,monospace}"
        "pre{background:#f5f5f5;padding:.75rem;overflow:auto}section{border-top:1px solid #ddd}"
        "</style></head><body>"
        f"<h1>{escape(info['title'])} API</h1><p>{escape(info['description'])}</p>"
        '<p>Machine-readable: <a href="/openapi.json">/openapi.json</a>. Send keys as '
        "<code>Authorization: Bearer &lt;key&gt;</code>.</p>" + "".join(sections) + "</body></html>"
    )


# Static lists (kind: segment with list: true): see journeyman.segment_lists.
def _list_change(summary: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    accepted = {
        "type": "object",
        "properties": {"accepted": {"type": "integer", "minimum": 1}},
        "required": ["accepted"],
    }
    return {
        "summary": summary,
        "security": _ADMIN,
        "parameters": parameters,
        "responses": {
            "202": {
                "description": "Taken: committed (serve) or stored in the bus (workers); a "
                "member added twice or removed when not in changes nothing",
                "content": {"application/json": {"schema": accepted}},
            },
            "400": _error("The body breaks a rule: the error names the field and the rule."),
            "401": _KEY,
            "404": _error("No such segment."),
            "409": _error("The segment is no list: its condition decides who is in it."),
            "413": _error("The body is over 1 MiB."),
            "429": _error("Too much is queued: retry after the Retry-After seconds."),
            "503": _error("The store or the bus is away; nothing changed: retry."),
        },
    }


_MEMBER_TEXT = {"type": "string", "minLength": 1, "maxLength": 255}
SPEC["paths"]["/v1/segments/{name}/members"]["post"] = {
    **_list_change(
        "Add profiles to a list segment, by userId or by email: each one that joins gets "
        "'segment_entered', and journeys with entry {segment: name} start",
        [_path_param("name")],
    ),
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {
                    "type": "object",
                    "additionalProperties": False,
                    "required": ["members"],
                    "properties": {
                        "members": {
                            "type": "array",
                            "minItems": 1,
                            "maxItems": 1000,
                            "items": {
                                "oneOf": [
                                    {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "required": ["userId"],
                                        "properties": {"userId": _MEMBER_TEXT},
                                    },
                                    {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "required": ["email"],
                                        "properties": {"email": _MEMBER_TEXT},
                                    },
                                ]
                            },
                        }
                    },
                }
            }
        },
    },
}
SPEC["paths"]["/v1/segments/{name}/members/{profile_id}"] = {
    "delete": _list_change(
        "Take a profile out of a list segment: it gets 'segment_exited' if it was in",
        [_path_param("name"), _path_param("profile_id")],
    )
}

# Trying a draft before publishing (journeyman.trying_api): nothing is sent or stored.
_DOCUMENT = {
    "type": "object",
    "description": "a journey's document, shaped as its YAML (kind: journey, name, entry, "
    "steps, ...); when left out, the stored draft's, else the workspace's own",
}
_ASKER = {"type": "string", "description": "who asks (kept nowhere: nothing is written)"}
_PROBLEM_LIST = {
    **_ERROR,
    "properties": {
        **_ERROR["properties"],
        "problems": {
            "type": "array",
            "description": "every problem, as `journeyman validate` prints it",
            "items": {"type": "object"},
        },
    },
}


_DRAFT_NAME = _path_param(
    "name", {"type": "string", "pattern": "^[A-Za-z0-9_][A-Za-z0-9_.-]*$", "maxLength": 100}
)


def _trying(
    summary: str,
    body: dict[str, Any],
    answer: str,
    missing: str | None,
    path: bool = True,
) -> dict[str, Any]:
    required = body.get("required", [])
    absent = {"404": _error(missing)} if missing else {}
    schema = {"type": "object", "additionalProperties": False, **body}
    return {
        "post": {
            "summary": summary,
            "security": [{"bearer": []}, {"basic": []}],
            "parameters": [_DRAFT_NAME] if path else [],
            "requestBody": {
                "required": bool(required),
                "content": {"application/json": {"schema": schema}},
            },
            "responses": {
                "200": {"description": answer, "content": {"application/json": {}}},
                "400": _error("The body is not JSON."),
                "401": _KEY,
                **absent,
                "413": _error("The body is over 1 MiB."),
                "422": _error(
                    "The body breaks a rule (the field is named); with 'problems' when the "
                    "document has errors; rule 'time' when the tests (10 s), the try (10 s) "
                    "or the preview (2 s) went past its time; rule 'trace' when the try made "
                    "more than 100,000 trace lines.",
                    _PROBLEM_LIST,
                ),
                "503": _error(
                    "The workspace folder cannot be read (it is gone); or the editor is busy "
                    "(rule 'busy', with Retry-After)."
                ),
            },
        }
    }


SPEC["paths"]["/v1/journeys/{name}/draft/tests"] = _trying(
    "Run the workspace's journey tests with a draft of the journey",
    {"properties": {"document": _DOCUMENT, "by": _ASKER}},
    "passed, failed, and each test's results: name, journey, passed, failures (as "
    "`journeyman test` prints them), trace",
    "No such journey, and no document for it.",
)
SPEC["paths"]["/v1/journeys/{name}/draft/try"] = _trying(
    "Replay a stored profile's traits and events through a draft of the journey, on a "
    "virtual clock: the path, end state, messages and trace; nothing is sent",
    {
        "required": ["profile"],
        "properties": {
            "profile": {"type": "string", "minLength": 1, "maxLength": 1000},
            "document": _DOCUMENT,
            "until": {
                "type": "string",
                "enum": ["now", "end"],
                "description": "replay up to now (the default), or on until no timer is left",
            },
            "by": _ASKER,
        },
    },
    "profile, visited, taken, state, end_state, step, messages, trace, sent (false)",
    "No such journey, or no such profile ('profile').",
)
_TEMPLATE_ANSWER = (
    "channel, subject, html, text, fields, sms (length, units, segments, encoding) and "
    "missing: the variables the profile lacks"
)
SPEC["paths"]["/v1/preview"] = _trying(
    "Render a template for a stored profile, or a sample one",
    {
        "properties": {
            "template": {"type": "object", "description": "a template's document"},
            "name": {"type": "string", "description": "a published template's name"},
            "profile": {"type": ["string", "null"], "minLength": 1, "maxLength": 1000},
            "by": _ASKER,
        },
        "oneOf": [{"required": ["template"]}, {"required": ["name"]}],
    },
    _TEMPLATE_ANSWER,
    "No such template ('name') or profile ('profile').",
    path=False,
)
SPEC["paths"]["/v1/check"] = _trying(
    "Check an expression or a Liquid text: the messages `journeyman validate` gives",
    {
        "required": ["kind", "text"],
        "properties": {
            "kind": {"type": "string", "enum": ["expression", "liquid"]},
            "text": {"type": "string"},
            "field": {"type": "string", "description": "the field's name, for the message"},
            "by": _ASKER,
        },
    },
    "problems: each with message, line and column (none when the text is sound)",
    None,
    path=False,
)


# The journey editor's drafts (journeyman.drafts_api); the console serves the same under
# /editor/api with its session and an X-CSRF-Token header instead of the admin key.
_DRAFT: dict[str, Any] = {
    "type": "object",
    "required": ["journey", "stored", "revision", "file", "document", "text", "diff", "problems"],
    "properties": {
        "journey": {"type": "string"},
        "stored": {"type": "boolean", "description": "false: made from the folder's file"},
        "revision": {"type": ["string", "null"], "description": "what the next save names"},
        "by": {"type": ["string", "null"]},
        "at": {"type": ["string", "null"], "format": "date-time"},
        "file": {"type": "string", "description": "the workspace file, relative to the folder"},
        "document": {"type": "object", "description": "the journey, as its YAML reads"},
        "text": {"type": "string", "description": "the file's whole text with the draft"},
        "diff": {"type": "string", "description": "unified diff of the file to 'text'"},
        "problems": {
            "type": "array",
            "description": "what journeyman validate says: path, file, line, column, message",
            "items": {"type": "object"},
        },
        "audit": {
            "type": "array",
            "description": "(GET) who did what, newest first, the latest 50: at, by, via, "
            "command (draft, edit, discard, save, publish...), workspace_version",
            "items": {"type": "object"},
        },
    },
}
_DRAFT_DOCUMENT = {
    "type": "object",
    "description": "the journey's document: kind journey, the path's name",
    "required": ["kind", "name"],
    "properties": {"kind": {"type": "string", "enum": ["journey"]}, "name": {"type": "string"}},
}
_REVISION = {"type": ["string", "null"], "description": "the draft's revision it starts from"}


def _draft_operation(
    summary: str, body: dict[str, Any] | None, ok: dict[str, Any], *errors: tuple[str, str]
) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "summary": summary,
        "security": _ADMIN,
        "parameters": [_DRAFT_NAME, _query("by", _WHO)],
        "responses": {
            **ok,
            "400": _error("The body is not a JSON object."),
            "401": _KEY,
            "404": _error("No such journey (or no draft of it to save)."),
            "409": _error(
                "No workspace folder; or (a save) the draft is not at 'revision', or its file "
                "cannot be read or written."
            ),
            "413": _error("The body is over 1 MiB."),
            "422": _error("The body or the name breaks a rule: the error names the field."),
            "503": _error("The editor is busy (rule 'busy', with Retry-After): try again."),
            **{status: _error(text) for status, text in errors},
        },
    }
    if body is not None:
        properties = {**body, "by": _WHO}
        schema = {"type": "object", "additionalProperties": False, "properties": properties}
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": schema}},
        }
    return operation


def _answer(description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "200": {"description": description, "content": {"application/json": {"schema": schema}}}
    }


SPEC["paths"]["/v1/journeys/{name}/draft"] = {
    "get": {
        **_draft_operation(
            "A journey's draft: the stored one, else one from the workspace folder's file",
            None,
            _answer("The draft", _DRAFT),
            ("404", "No such journey in the folder (new=1 starts one)."),
        ),
        "parameters": [_DRAFT_NAME, _query("new", {"type": "string", "enum": ["1", "true"]})],
    },
    "put": _draft_operation(
        "Store a draft, if 'revision' is still the stored draft's (null: none is stored); "
        "409 otherwise, with 'theirs' (their draft) and 'diff' (yours to theirs), nothing "
        "written. A draft with problems is stored and lists them.",
        {"document": _DRAFT_DOCUMENT, "revision": _REVISION},
        _answer("Stored, with a new revision", _DRAFT),
    ),
    "delete": {
        **_draft_operation(
            "Discard a journey's draft (kept in its audit)", None, {"204": {"description": "Gone"}}
        ),
    },
}
SPEC["paths"]["/v1/journeys/{name}/draft/check"] = {
    "post": _draft_operation(
        "A document's text, diff and problems as a draft, without storing it",
        {"document": _DRAFT_DOCUMENT},
        _answer(
            "Checked",
            {"type": "object", "required": ["text", "diff", "problems"]},
        ),
    )
}
SPEC["paths"]["/v1/journeys/{name}/draft/save"] = {
    "post": _draft_operation(
        "Write the draft at 'revision' to its file in the workspace folder",
        {"revision": _REVISION},
        _answer("Written", {"type": "object", "required": ["file", "saved"]}),
        ("404", "No draft, and no such journey."),
    )
}
SPEC["paths"]["/v1/journeys/{name}/draft/publish"] = {
    "post": _draft_operation(
        "Write the draft at 'revision' to the folder, publish the folder's plan (as the "
        "console's Publish does) and drop the draft",
        {"revision": _REVISION},
        _answer("Published", {"type": "object", "required": ["plan", "workspace"]}),
        ("404", "No draft, and no such journey."),
    )
}
SPEC["paths"]["/v1/editor/schema"] = _get(
    "The editor's form: the fields of a journey and of each step type (type, required, "
    "help, enum), each step type's edges, each channel's template fields "
    "(template.channels), and names to complete (events, traits, templates, segments, "
    "actions, journeys, each journey's steps)"
)


# Templates' drafts: the same operations, with a template's document and name.
_TEMPLATE_DRAFT_DOCUMENT = {
    "type": "object",
    "description": "the template's document: kind template, the path's name, its channel "
    "and the channel's fields (subject, html, text; body; title)",
    "required": ["kind", "name"],
    "properties": {"kind": {"type": "string", "enum": ["template"]}, "name": {"type": "string"}},
}
_TEMPLATE_DRAFT: dict[str, Any] = {
    **_DRAFT,
    "required": ["template", *_DRAFT["required"][1:]],
    "properties": {
        "template": {"type": "string"},
        **{k: v for k, v in _DRAFT["properties"].items() if k != "journey"},
        "document": _TEMPLATE_DRAFT_DOCUMENT,
    },
}


def _for_templates(item: Any) -> Any:
    """A journey draft operation's description, made a template draft's."""
    if isinstance(item, dict):
        if item is _DRAFT:
            return _TEMPLATE_DRAFT
        if item is _DRAFT_DOCUMENT:
            return _TEMPLATE_DRAFT_DOCUMENT
        return {key: _for_templates(value) for key, value in item.items()}
    if isinstance(item, list):
        return [_for_templates(value) for value in item]
    if isinstance(item, str):
        return item.replace("journey", "template")
    return item


for _tail in ("", "/check", "/save", "/publish"):
    SPEC["paths"][f"/v1/templates/{{name}}/draft{_tail}"] = _for_templates(
        SPEC["paths"][f"/v1/journeys/{{name}}/draft{_tail}"]
    )
