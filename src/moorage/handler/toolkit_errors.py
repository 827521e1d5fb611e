"""The errors of SageMaker's serving toolkit, and how a failed request becomes a status and a message.

User handlers raise `sagemaker_inference.errors.BaseInferenceToolkitError` (or its subclass
`GenericInferenceToolkitError`) to choose the HTTP status. Two copies of that package exist (the
PyPI one and the one vendored by sagemaker-pytorch-inference, spec §2.0), so the class is
recognised by name in the exception's MRO plus its three attributes, not by identity.
Every other exception becomes a 500 whose message is `str(e)` (spec §2.10).
"""

from __future__ import annotations

from dataclasses import dataclass

from moorage.errors import InstanceStartError

__all__ = [
    "ModelLoadError",
    "ToolkitFailure",
    "UnsupportedFormatError",
    "describe_failure",
    "is_toolkit_error",
    "remove_crlf",
]

# The toolkit's default message and phrase for GenericInferenceToolkitError (sagemaker-inference 1.10.1).
_DEFAULT_MESSAGE = "Invalid Request"


class UnsupportedFormatError(Exception):
    """No default decoder or encoder for a content type; a 500 like any other error, not a 415.

    The text is the toolkit's, typo ("to to") and 12-space indents included (spec §2.9).
    """

    def __init__(self, content_type: str | None) -> None:
        super().__init__(
            f"Content type {content_type} is not supported by this framework.\n"
            "\n"
            "            Please implement input_fn to to deserialize the request data or an output_fn to\n"
            "            serialize the response. For more information, see the SageMaker Python SDK README."
        )
        self.content_type = content_type


class ModelLoadError(InstanceStartError):
    """The default model_fn found a model file that is not TorchScript (spec §1.6)."""


@dataclass(frozen=True)
class ToolkitFailure:
    """What the toolkit sends for a failed request: status, body message and reason phrase."""

    status: int
    message: str
    phrase: str


def is_toolkit_error(exc: BaseException) -> bool:
    """True for either copy of sagemaker_inference's BaseInferenceToolkitError (and subclasses)."""
    named = any(cls.__name__ == "BaseInferenceToolkitError" for cls in type(exc).__mro__)
    return named and all(hasattr(exc, name) for name in ("status_code", "message", "phrase"))


def describe_failure(exc: BaseException) -> ToolkitFailure:
    """Map an exception to the toolkit's response (spec §2.10).

    A toolkit error keeps its own status, message and phrase; anything else is wrapped as the
    toolkit does, in GenericInferenceToolkitError(500, str(e)), whose message falls back to
    "Invalid Request" when str(e) is empty. The phrase loses CR and LF, which Netty refuses.
    """
    if is_toolkit_error(exc):
        status = getattr(exc, "status_code", 500)
        message = getattr(exc, "message", None)
        phrase = getattr(exc, "phrase", None)
        text = _DEFAULT_MESSAGE if message is None else _text(message)
        return ToolkitFailure(
            status=status if _is_http_status(status) else 500,
            message=text,
            phrase=remove_crlf(text if phrase is None else _text(phrase)),
        )
    text = _text(exc) or _DEFAULT_MESSAGE
    return ToolkitFailure(status=500, message=text, phrase=remove_crlf(text))


def remove_crlf(text: str) -> str:
    """Replace CR and LF by spaces: a reason phrase must stay on the status line."""
    return text.replace("\r", " ").replace("\n", " ")


def _text(value: object) -> str:
    """str(value), even for user objects whose __str__ raises (a failure must still be reported)."""
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} whose str() failed>"


def _is_http_status(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 100 <= value <= 599
