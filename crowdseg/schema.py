"""The OpenAPI schema's conventions (drf-spectacular's ``DEFAULT_SCHEMA_CLASS``).

- Every operation documents its 4xx answers with the one error body of ``crowdseg.api``
  (component ``Error``): 400 and 403 always, 404 where the path names an object, 429 where the
  view is throttled, and ``4XX`` for the rest (409, 413, 415, 422, ...).
- A request serializer with ``exactly_one_of`` (``crowdseg.api.ExactlyOneOf``) says so:
  ``oneOf: [{required: [a]}, {required: [b]}]``.
- Request bodies are JSON (multipart where files are sent), and a request string says what DRF's
  ``CharField`` refuses: NUL characters, and only whitespace where a blank is not allowed.
"""

from __future__ import annotations

from django.core.validators import RegexValidator
from drf_spectacular import openapi
from drf_spectacular.plumbing import get_lib_doc_excludes
from rest_framework import serializers


def lib_doc_excludes() -> list:
    """``GET_LIB_DOC_EXCLUDES``: a serializer's description is its own docstring, not a mixin's."""
    from .api import ExactlyOneOf, StrictJSON

    return [*get_lib_doc_excludes(), StrictJSON, ExactlyOneOf]


class ErrorDetailSerializer(serializers.Serializer):
    status = serializers.IntegerField(help_text="The HTTP status, repeated")
    code = serializers.CharField(help_text="Stable, for clients: invalid, not_found, too_large, ...")
    message = serializers.CharField(help_text="For people")
    fields = serializers.DictField(
        required=False, help_text="Only for validation errors: the messages of each named field"
    )


class ErrorSerializer(serializers.Serializer):
    """Every 4xx answer under /api/."""

    error = ErrorDetailSerializer()

    class Meta:
        ref_name = "Error"


_MEANING = {
    "400": "Invalid request: a malformed body, a field's value or a query parameter",
    "403": "Not signed in, or not allowed",
    "404": "No such object, or not one of yours",
    "429": "Too many requests: retry after Retry-After seconds",
    "4XX": "Refused (409 conflict, 413 too large, 415 media type, 422 unprocessable, ...)",
}


# DRF's CharField refuses NUL characters, and trims whitespace before checking for a blank.
NO_NUL = r"^[^\x00]*$"
NOT_BLANK = r"^[^\x00]*[^\s\x00][^\x00]*$"


class AutoSchema(openapi.AutoSchema):
    def map_parsers(self):
        # JSON is the API's format; DRF's form parsers stay for browsers' convenience, but nested
        # fields (masks, prompts) cannot be sent as forms, nor files as url-encoded forms.
        media_types = super().map_parsers()
        for only in ("application/json", "multipart/form-data"):
            if only in media_types:
                return [only]
        return media_types

    def _map_serializer_field(self, field, direction, bypass_extensions=False):
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        plain_string = schema.get("type") == "string" and not {"format", "pattern", "enum"} & set(schema)
        has_regex = any(isinstance(validator, RegexValidator) for validator in field.validators)
        if direction == "request" and isinstance(field, serializers.CharField) and plain_string and not has_regex:
            schema["pattern"] = NO_NUL if field.allow_blank else NOT_BLANK
        return schema

    def _get_response_bodies(self, direction="response"):
        responses = super()._get_response_bodies(direction)
        codes = ["400", "403", "4XX"]
        if "{" in self.path:
            codes.append("404")
        if self.view.get_throttles():
            codes.append("429")
        error = self._get_response_for_code(ErrorSerializer, "400", direction=direction)["content"]
        for code in codes:
            responses.setdefault(code, {"description": _MEANING[code]})
        for code, response in responses.items():
            if code.startswith("4") and "content" not in response:
                response["content"] = error
        return dict(sorted(responses.items()))

    def _map_basic_serializer(self, serializer, direction):
        schema = super()._map_basic_serializer(serializer, direction)
        names = getattr(serializer, "exactly_one_of", ())
        if names and direction == "request":
            schema["oneOf"] = [{"required": [name]} for name in names]
            schema["description"] = (schema.get("description", "") + f"\n\nExactly one of: {', '.join(names)}.").strip()
        return schema
