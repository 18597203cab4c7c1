"""The OpenAPI description of the HTTP API, served at ``/openapi.json``."""

from __future__ import annotations

from typing import Any

__all__ = ["SPEC"]

_ERROR = {
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
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ERROR}}}


_INGEST_ERRORS = {
    "400": _error("The call breaks a rule: the error names the field and the rule."),
    "401": _error("The write key is missing or wrong."),
    "413": _error("The body is too large."),
    "429": _error("Too much is queued: retry after the Retry-After seconds."),
    "503": _error("The events could not be stored; nothing was kept: retry."),
}

_ACCEPTED = {
    "description": "Stored on disk: the events will be processed.",
    "content": {
        "application/json": {
            "schema": {
                "type": "object",
                "properties": {
                    "accepted": {"type": "integer"},
                    "rejected": {"type": "array", "items": {"type": "object"}},
                },
            }
        }
    },
}

_SEGMENT_IDS = {
    "userId": {"type": "string"},
    "anonymousId": {"type": "string"},
    "timestamp": {"type": "string", "format": "date-time"},
    "messageId": {"type": "string", "description": "a retry with the same id is ignored"},
    "context": {"type": "object"},
}

_TRACK = {
    "type": "object",
    "required": ["event"],
    "properties": {**_SEGMENT_IDS, "event": {"type": "string"}, "properties": {"type": "object"}},
}
_IDENTIFY = {
    "type": "object",
    "properties": {**_SEGMENT_IDS, "traits": {"type": "object"}},
}


def _post(summary: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "security": [{"bearer": []}, {"basic": []}],
            "requestBody": {"required": True, "content": {"application/json": {"schema": schema}}},
            "responses": {"202": _ACCEPTED, **_INGEST_ERRORS},
        }
    }


def _get(summary: str, parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "get": {
            "summary": summary,
            "security": [{"bearer": []}, {"basic": []}],
            "parameters": parameters or [],
            "responses": {
                "200": {"description": "OK", "content": {"application/json": {}}},
                "401": _error("The admin key is missing or wrong."),
                "404": _error("Not found."),
            },
        }
    }


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": {"type": "string"}}


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
        "/v1/track": _post("Record what a profile did", _TRACK),
        "/v1/identify": _post("Set a profile's traits", _IDENTIFY),
        "/v1/batch": _post(
            "Up to 500 track and identify calls (512 KiB)",
            {
                "type": "object",
                "required": ["batch"],
                "properties": {
                    "batch": {
                        "type": "array",
                        "maxItems": 500,
                        "items": {"oneOf": [_TRACK, _IDENTIFY]},
                    }
                },
            },
        ),
        "/v1/journeys": _get("Every published journey"),
        "/v1/journeys/{name}": _get(
            "One journey, its definition and live counts per step", [_path_param("name")]
        ),
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
                "responses": {
                    "200": {"description": "Done", "content": {"application/json": {}}},
                    "401": _error("The admin key is missing or wrong."),
                    "404": _error("No such journey or command."),
                },
            }
        },
        "/v1/workspace": {
            "put": {
                "summary": "Validate and publish a workspace (dry_run=true: plan only)",
                "security": [{"bearer": []}, {"basic": []}],
                "parameters": [_query("dry_run")],
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
                                    }
                                },
                            }
                        }
                    },
                },
                "responses": {
                    "200": {"description": "The plan", "content": {"application/json": {}}},
                    "400": _error("The body is not a map of file names to text."),
                    "401": _error("The admin key is missing or wrong."),
                    "422": {"description": "The workspace has errors: nothing was published"},
                },
            }
        },
        "/v1/profiles/{profile_id}": _get(
            "A profile: traits, recent events, every instance with its trace",
            [_path_param("profile_id")],
        ),
        "/v1/messages": _get(
            "The message log",
            [_query("profile"), _query("journey"), _query("status"), _query("limit")],
        ),
        "/healthz": {"get": {"summary": "Liveness", "responses": {"200": {"description": "OK"}}}},
        "/metrics": {
            "get": {"summary": "Prometheus metrics", "responses": {"200": {"description": "OK"}}}
        },
        "/openapi.json": {
            "get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}
        },
    },
}
