from aws_cdk import Stack
from constructs import Construct

from stacks.storage.access import ModelAccessRoles
from stacks.storage.bucket import ModelBucket
from stacks.storage.repository import ModelImageRepository
from stacks.settings import Settings


class StorageStack(Stack):
    """Long-lived data: the model bucket and the image repository (both retained),
    and the roles through which pods read and write the bucket."""

    def __init__(self, scope: Construct, id: str, *, settings: Settings, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.models = ModelBucket(self, "ModelBucket", settings=settings)
        self.images = ModelImageRepository(self, "ModelImage", settings=settings)
        self.bucket = self.models.bucket
        self.repository = self.images.repository
        self.access = ModelAccessRoles(self, "ModelAccess", settings=settings, bucket=self.bucket)
