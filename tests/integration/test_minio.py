"""MinIO itself, where `minio/minio` can be pulled (the team's CI, through Harbor's proxy cache): a test
image that keeps MinIO's container contract (tests/images/minio-contract: its entrypoint, `server DIR
--address :PORT`, both root variables or neither, a password of 8 characters at least, every request's
SigV4 signature checked against the root keys) stands for it under the name verify.minio_image gives."""
import boto3
import botocore.exceptions
import pytest
from support import variant_image

from imagekit import config, containers, services
from imagekit.errors import ToolError
from imagekit.verify.compat import verify_compat


@pytest.fixture(scope="module")
def minio(engine, built):
    return variant_image(engine, "minio-contract", built.image("s3").image_id)


@pytest.mark.parametrize("env, said", [
    ({"MINIO_ROOT_USER": "imagekit"}, 'Missing credential environment variable, "MINIO_ROOT_PASSWORD"'),
    ({"MINIO_ROOT_PASSWORD": "long-enough-secret"}, 'Missing credential environment variable, "MINIO_ROOT_USER"'),
    ({"MINIO_ROOT_USER": "imagekit", "MINIO_ROOT_PASSWORD": "short"}, "secret key length at least 8 characters"),
])
def test_the_contract_refuses_what_minio_refuses_at_start(run, minio, env, said):
    c = run.start(containers.Container(minio, ["server", "/data", "--address", ":9000"], env=env))
    with pytest.raises(ToolError, match="exit 1") as e:
        c.wait(30)  # it exits at once, naming the variable
    assert said in e.value.output


def test_the_contract_checks_every_signature_against_the_root_keys(run, minio):
    keys = {"AWS_ACCESS_KEY_ID": "imagekit", "AWS_SECRET_ACCESS_KEY": "the-root-password", "AWS_DEFAULT_REGION": "us-east-1"}
    server = run.start(services.S3Server(minio, keys, minio=True), ready=60)  # as verify-compat starts MinIO
    url = server.url(9000)
    good = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="imagekit",
                        aws_secret_access_key="the-root-password")
    good.create_bucket(Bucket="signed")
    assert good.list_buckets()["Buckets"][0]["Name"] == "signed"
    wrong = boto3.client("s3", endpoint_url=url, region_name="us-east-1", aws_access_key_id="imagekit",
                         aws_secret_access_key="not-the-password")
    with pytest.raises(botocore.exceptions.ClientError) as e:
        wrong.list_buckets()
    assert e.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_verify_compat_starts_minio_as_its_image_documents_it(cfg, engine, built, minio, leftovers):
    before = leftovers()
    mcfg = config.load(cfg.source, env={"IMAGEKIT_VERIFY_MINIO_IMAGE": minio})
    report = verify_compat(mcfg, engine, scenarios=("iris",), write_record=False)
    assert report.ok, report.roundtrip.scenarios
    assert report.roundtrip.s3_server == f"MinIO ({minio})"  # the report says which S3 server was used
    assert leftovers() == before
