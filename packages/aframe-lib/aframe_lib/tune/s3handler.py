"""The s3fs handler of a search's storage filesystem, rebuilt from the environment of whichever
process unpickles it (see :mod:`.storage`). Its own module: it imports pyarrow."""

from __future__ import annotations

from pyarrow.fs import FSSpecHandler

from ..utils import fs


class EnvS3Handler(FSSpecHandler):
    """An s3fs handler for ``pyarrow.fs.PyFileSystem`` that, wherever it is unpickled, connects
    to that process's ``AWS_ENDPOINT_URL_S3``/``AWS_ENDPOINT_URL`` (else ``fallback``).

    Args:
        fallback: the endpoint when the environment names none (the creating process's).
    """

    def __init__(self, fallback: str | None = None):
        import s3fs

        self.fallback = fallback
        self.endpoint = fs.s3_endpoint() or fallback
        kwargs = {"endpoint_url": self.endpoint} if self.endpoint else {}
        super().__init__(s3fs.S3FileSystem(skip_instance_cache=True, client_kwargs=kwargs))

    def __reduce__(self):
        return (EnvS3Handler, (self.fallback,))
