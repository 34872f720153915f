"""A real S3-compatible server for tests: moto's ThreadedMotoServer on 127.0.0.1, a free port."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from aiobotocore.session import get_session
from moto.server import ThreadedMotoServer

ACCESS_KEY = "test"
SECRET_KEY = "test"
REGION = "us-east-1"


@contextlib.contextmanager
def moto_s3() -> Iterator[str]:
    """Run a moto S3 server for the block; yields its endpoint URL (``http://127.0.0.1:PORT``).

    moto keeps its buckets in process-wide state, so use unique bucket names per test.
    Any access key is accepted; ``ACCESS_KEY``/``SECRET_KEY`` are the conventional ones.
    """
    # werkzeug logs every request at INFO.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield f"http://{host}:{port}"
    finally:
        server.stop()


async def create_bucket(endpoint_url: str, bucket: str) -> None:
    """Create ``bucket`` on the server at ``endpoint_url`` (moto, or any S3-compatible)."""
    session = get_session()
    async with session.create_client(
        "s3",
        endpoint_url=endpoint_url,
        region_name=REGION,
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
    ) as client:
        await client.create_bucket(Bucket=bucket)
