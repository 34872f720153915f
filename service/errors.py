"""The service's one error hierarchy; each error knows its HTTP status and JSON body.

Nothing here imports aiohttp: the error middleware (``service.api.middleware``) turns these
into responses, and code outside the HTTP layer raises them freely.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ServiceError(Exception):
    """Base of every error the service answers on purpose."""

    status: ClassVar[int] = 500
    default_message: ClassVar[str] = "An unexpected error occurred. Our team has been notified."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        return {"message": self.message}

    def headers(self) -> dict[str, str]:
        return {}


class Unauthorized(ServiceError):
    status = 401
    default_message = "Unauthorized - Invalid API token"


class Forbidden(ServiceError):
    status = 403
    default_message = "Forbidden - Insufficient permissions"

    def __init__(self, required_permission: str) -> None:
        super().__init__()
        self.required_permission = required_permission

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "required_permission": self.required_permission}


class NotFound(ServiceError):
    """A resource that does not exist, or belongs to another institution: same answer."""

    status = 404

    def __init__(self, resource_id: object = None, message: str | None = None) -> None:
        super().__init__(message or f"The requested ID {resource_id} was not found.")

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "error": "resource_not_found"}


class RouteNotFound(NotFound):
    def __init__(self, path: str) -> None:
        super().__init__(message=f"The route {path} could not be found.")


class MethodNotAllowed(ServiceError):
    status = 405

    def __init__(self, method: str, allowed: set[str]) -> None:
        super().__init__(f"The {method} method is not supported for this route.")
        self.allowed = allowed

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(sorted(self.allowed))}


class Conflict(ServiceError):
    status = 409
    default_message = "The request conflicts with the current state of the resource."


class PayloadTooLarge(ServiceError):
    status = 413
    default_message = "The request body is too large."


class UnsupportedMediaType(ServiceError):
    status = 415
    default_message = "The request content type is not supported."


class Unprocessable(ServiceError):
    """A 422 that is about the request as a whole, not one field: ``{"message": ...}``."""

    status = 422


class FieldValidationError(Unprocessable):
    """Field validation: the first problem as message (the contract's "first problem, human
    readable", without Laravel's "(and N more errors)"), all problems by field."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        first = next(iter(errors.values()))[0] if errors else "The given data was invalid."
        super().__init__(first)
        self.errors = errors

    @classmethod
    def single(cls, field: str, message: str) -> FieldValidationError:
        return cls({field: [message]})

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "errors": self.errors}


class BulkValidationError(Unprocessable):
    """The bulk endpoint's shape: one ``Entry N: ...`` line per problem."""

    def __init__(self, message: str, errors: list[str]) -> None:
        super().__init__(message)
        self.errors = errors

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "errors": self.errors}


class RateLimited(ServiceError):
    status = 429
    default_message = "Too many requests"

    def __init__(self, retry_after_s: int) -> None:
        super().__init__()
        self.retry_after_s = max(1, retry_after_s)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after_s)}


class ServiceUnavailable(ServiceError):
    status = 503
    default_message = "The service is temporarily unavailable. Please retry shortly."

    def body(self) -> dict[str, Any]:
        return {"message": self.message, "error_code": "SERVICE_UNAVAILABLE"}


class InternalError(ServiceError):
    status = 500

    def body(self) -> dict[str, Any]:
        return {"message": self.default_message, "error_code": "SERVER_ERROR"}
