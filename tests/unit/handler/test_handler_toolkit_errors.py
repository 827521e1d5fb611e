"""How exceptions become the toolkit's status, message and reason phrase (spec §2.10)."""

from __future__ import annotations

from sagemaker_inference.errors import BaseInferenceToolkitError, GenericInferenceToolkitError

from moorage.handler.toolkit_errors import (
    ToolkitFailure,
    UnsupportedFormatError,
    describe_failure,
    is_toolkit_error,
)


class LookAlike(Exception):
    """Has a status_code but is not the toolkit's class."""


def vendored_copy() -> type[Exception]:
    """A class named like the toolkit's but from another package, as the vendored copy is (spec §2.0)."""

    class BaseInferenceToolkitError(Exception):
        def __init__(self, status_code: int, message: str, phrase: str) -> None:
            super().__init__(status_code, message, phrase)
            self.status_code = status_code
            self.message = message
            self.phrase = phrase

    class Custom(BaseInferenceToolkitError):
        pass

    return Custom


def test_plain_exceptions_are_500_with_their_text() -> None:
    assert describe_failure(ValueError("bad\r\ninput")) == ToolkitFailure(500, "bad\r\ninput", "bad  input")


def test_an_empty_message_becomes_invalid_request() -> None:
    assert describe_failure(RuntimeError()) == ToolkitFailure(500, "Invalid Request", "Invalid Request")


def test_unsupported_format_is_500() -> None:
    failure = describe_failure(UnsupportedFormatError("text/plain"))
    assert failure.status == 500
    assert failure.message.startswith("Content type text/plain is not supported by this framework.\n\n")
    assert "\n" not in failure.phrase


def test_user_toolkit_errors_choose_status_message_and_phrase() -> None:
    error = BaseInferenceToolkitError(400, "bad payload", "Bad\nRequest")
    assert is_toolkit_error(error)
    assert describe_failure(error) == ToolkitFailure(400, "bad payload", "Bad Request")
    assert describe_failure(GenericInferenceToolkitError(403)) == ToolkitFailure(
        403, "Invalid Request", "Invalid Request"
    )


def test_the_other_copy_of_the_package_is_recognised_by_name() -> None:
    error = vendored_copy()(429, "slow down", "Too Many Requests")
    assert is_toolkit_error(error)
    assert describe_failure(error) == ToolkitFailure(429, "slow down", "Too Many Requests")


def test_lookalikes_without_the_attributes_or_name_are_plain_errors() -> None:
    error = LookAlike("x")
    error.status_code = 400  # type: ignore[attr-defined]
    assert not is_toolkit_error(error)
    assert describe_failure(error).status == 500


def test_an_invalid_status_code_falls_back_to_500() -> None:
    assert describe_failure(BaseInferenceToolkitError(99999, "m", "p")).status == 500
    assert describe_failure(BaseInferenceToolkitError("400", "m", "p")).status == 500


def test_an_exception_whose_str_fails_is_still_described() -> None:
    class Broken(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    assert describe_failure(Broken()).message == "<Broken whose str() failed>"
