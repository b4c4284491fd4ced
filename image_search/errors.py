"""Domain errors. The API maps them to HTTP status codes in one place (``serve.http_errors``)."""

from __future__ import annotations


class ImageSearchError(Exception):
    """Base class for every error this package raises on purpose."""


class ConfigError(ImageSearchError):
    """A setting is missing or inconsistent: trying again changes nothing until it is fixed."""


class BucketNotFoundError(ConfigError):
    """The configured bucket does not exist or is not readable."""


class CredentialsMissingError(ConfigError):
    """boto3 found no AWS credentials anywhere it looks."""


class NoImagesError(ImageSearchError):
    """A build found no images to index."""


class BuildRunningError(ImageSearchError):
    """Another build holds the build lease, or took it over from this one."""


class PublishConflictError(ImageSearchError):
    """``current.json`` changed while this build ran: another build published first."""


class ModelLoadError(ImageSearchError):
    """The CLIP model could not be loaded from the configured source."""


class ImageModelLoadingError(ModelLoadError):
    """The image tower is still loading after a cold start (text searches already answer)."""


class QualityGateError(ImageSearchError):
    """A quantised export ranks the user's images too differently from fp32 (``export --check``)."""


class StorageUnavailableError(ImageSearchError):
    """S3 could not be reached or answered with a server error."""


class ObjectChangedError(ImageSearchError):
    """An object no longer has the ETag it was listed with: it was replaced since."""


class IndexNotReadyError(ImageSearchError):
    """No index has been published yet, or it could not be loaded."""


class IndexMismatchError(ImageSearchError):
    """Index artefacts disagree with each other or with the running model."""


class NewerFormatError(IndexMismatchError):
    """A published document in a format newer than this code reads (written by a newer version)."""


class InvalidImageError(ImageSearchError):
    """Bytes that are not an image in an accepted format."""


class ImageTooLargeError(ImageSearchError):
    """An upload over the byte limit or an image over the pixel limit."""


class UnauthorizedError(ImageSearchError):
    """A request without a valid API key while keys are configured."""


class UnknownFolderError(ImageSearchError):
    """A folder that is not in the index."""


class UnknownKeyError(ImageSearchError):
    """An image key that is not in the index."""


class UnknownPrefixError(UnknownFolderError):
    """A key prefix that no indexed image starts with (answered like an unknown folder)."""


class DuplicatesUnavailableError(ImageSearchError):
    """The served build holds no near-duplicate groups (made before they were computed)."""


class InvalidQueryError(ImageSearchError):
    """A combined query that cannot be answered as given (its parts cancel out, a file it names
    was not uploaded, an image that is not base64)."""


class PhotoFieldsMissingError(ImageSearchError):
    """A filter on photo fields (date taken, camera, size) over a build made before the build
    read them: only a rebuild helps."""


class InvalidCursorError(ImageSearchError):
    """A cursor that is damaged, or was made for another query."""


class CursorExpiredError(ImageSearchError):
    """A cursor from a build that is no longer served: its pages would not follow on."""
