"""AWS errors as one line that says what to do; the raw error stays available behind ``--debug``."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from typing import Any, TypeVar


class NothingThere(Exception):
    """The account holds nothing of this kind yet (no stack, no model, no endpoint): not a failure of the
    command, a fact to state plainly."""


NOT_FOUND_CODES = ("ResourceNotFound", "ResourceNotFoundException", "ValidationException")
NOT_FOUND_WORDS = ("does not exist", "could not find", "not found")


def is_not_found(exc: BaseException) -> bool:
    """SageMaker reports a missing resource as a ValidationException (or ResourceNotFound) whose message
    says so; other ValidationExceptions are real errors."""
    error = getattr(exc, "response", {}).get("Error", {}) if hasattr(exc, "response") else {}
    message = str(error.get("Message", "")).lower()
    return error.get("Code") in NOT_FOUND_CODES and any(word in message for word in NOT_FOUND_WORDS)


def translate(exc: BaseException, region: str) -> str | None:
    """The one-line explanation of a botocore error, or None for anything that is not one."""
    from botocore import exceptions as bex

    if isinstance(exc, (bex.NoCredentialsError, bex.PartialCredentialsError)):
        return (
            "no AWS credentials found: run `aws configure` or `aws sso login`, or set AWS_PROFILE "
            "(for a moto server on loopback: AWS_ENDPOINT_URL plus any key pair)"
        )
    if isinstance(exc, (bex.TokenRetrievalError, bex.SSOTokenLoadError, bex.UnauthorizedSSOTokenError)):
        return f"the AWS SSO session has expired or was never started: run `aws sso login` and retry ({exc})"
    if isinstance(exc, bex.ProfileNotFound):
        return f"{exc}: check AWS_PROFILE and ~/.aws/config (`aws configure list-profiles`)"
    if isinstance(exc, bex.NoRegionError):
        return "no AWS region: set project.region in the config"
    if isinstance(exc, (bex.ConnectTimeoutError, bex.ReadTimeoutError)):
        return f"AWS did not answer in time ({exc}): check the network and retry"
    if isinstance(exc, bex.EndpointConnectionError):
        return (
            f"cannot reach the AWS endpoint ({exc.kwargs.get('endpoint_url')}): check the network, the region "
            f"({region}) and AWS_ENDPOINT_URL"
        )
    if isinstance(exc, bex.ClientError):
        error = exc.response.get("Error", {})
        code, message = error.get("Code", ""), error.get("Message", "")
        operation = getattr(exc, "operation_name", "the call")
        if code in ("ExpiredToken", "ExpiredTokenException", "RequestExpired"):
            return "the AWS session has expired: log in again (`aws sso login`) and retry"
        if code in ("UnrecognizedClientException", "InvalidClientTokenId", "InvalidSignatureException"):
            return "AWS rejected the credentials: check AWS_PROFILE / the access key and that they belong to this account"
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            return (
                f"access denied for {operation} in {region}: your identity lacks this permission ({message})"
            )
        if code in ("ThrottlingException", "Throttling", "TooManyRequestsException", "RequestLimitExceeded"):
            return f"AWS throttled {operation}: wait a minute and retry"
        if is_not_found(exc):
            return f"{message.rstrip('.')} in {region}: deploy the stacks first (`cdk deploy --all`) or check project.region"
        return f"{operation} failed with {code}: {message}"
    if isinstance(
        exc, bex.BotoCoreError
    ):  # anything else botocore raises: its own message is the best we have
        return f"{type(exc).__name__}: {exc}"
    return None


class AwsError(Exception):
    """An AWS error explained in one line; the original is its ``__cause__`` (shown by ``--debug``)."""


@contextlib.contextmanager
def explained(region: str) -> Iterator[None]:
    """Turn a botocore error raised inside into an :class:`AwsError` that says what to do."""
    try:
        yield
    except Exception as exc:
        message = translate(exc, region)
        if message is None:
            raise
        raise AwsError(message) from exc


Method = TypeVar("Method", bound=Callable[..., Any])


def aws_call(method: Method) -> Method:
    """:func:`explained` around a method of an object whose ``region`` names the AWS region it calls."""

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        with explained(self.region):
            return method(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
