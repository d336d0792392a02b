"""Shared fixtures: a real S3 protocol server on 127.0.0.1 (moto's server mode)."""

from __future__ import annotations

import contextlib
import urllib.request
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _no_response_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """Tests run without the response cache (it would serve one test's answers to another),
    and never touch the user's: tests of the cache turn it on with ``GRIDLOOM_CACHE_DIR``
    pointing at their own folder and ``GRIDLOOM_NO_CACHE`` removed."""
    monkeypatch.setenv("GRIDLOOM_NO_CACHE", "1")
    monkeypatch.setenv("GRIDLOOM_CACHE_DIR", str(tmp_path_factory.mktemp("response-cache")))


#: Credentials the S3 server is used with (moto accepts any unless told to check them).
S3_ACCESS_KEY = "gridloom-test-key"
S3_SECRET_KEY = "gridloom-test-secret"


class S3Server:
    """A moto S3 server running in a thread of the test process.

    Attributes:
        url: its endpoint, ``http://127.0.0.1:PORT``.
    """

    def __init__(self, url: str) -> None:
        self.url = url

    def set_env(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Point S3 clients (pyarrow's, boto3's) at the server, with test credentials."""
        monkeypatch.setenv("AWS_ENDPOINT_URL_S3", self.url)
        monkeypatch.setenv("AWS_ENDPOINT_URL", self.url)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
        monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
        monkeypatch.delenv("AWS_PROFILE", raising=False)

    def bucket(self, name: str) -> str:
        """Create the bucket ``name`` (if it does not exist yet); return ``"s3://name"``."""
        import boto3  # type: ignore[import-untyped]

        client = boto3.client(
            "s3",
            endpoint_url=self.url,
            aws_access_key_id=S3_ACCESS_KEY,
            aws_secret_access_key=S3_SECRET_KEY,
            region_name="us-east-1",
        )
        with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
            client.create_bucket(Bucket=name)
        return f"s3://{name}"

    @contextlib.contextmanager
    def checking_credentials(self) -> Iterator[None]:
        """While inside, the server refuses requests whose access key it does not know."""
        self._set_auth("0")
        try:
            yield
        finally:
            self._set_auth("inf")

    def _set_auth(self, count: str) -> None:
        request = urllib.request.Request(
            f"{self.url}/moto-api/reset-auth",
            data=count.encode(),
            method="POST",
            headers={"Content-Type": "text/plain"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            response.read()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A real S3 protocol server on 127.0.0.1 for the whole session (skipped without moto)."""
    server_module = pytest.importorskip("moto.server")
    server = server_module.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    try:
        host, port = server.get_host_and_port()
        yield S3Server(f"http://{host}:{port}")
    finally:
        server.stop()
