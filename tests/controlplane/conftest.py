"""The S3 stand-in (a moto server on 127.0.0.1) the add-on backup tests use, for the control plane's backups."""

from tests.addons.conftest import s3_endpoint, s3_env  # noqa: F401 - fixtures
