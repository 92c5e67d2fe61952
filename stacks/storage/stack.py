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
        self.models = ModelBucket(self, "ModelBucket", model_name=settings.model.model_name,
                                  noncurrent_version_days=settings.storage.model_noncurrent_version_days,
                                  job_result_days=settings.endpoint.job_result_days)
        self.images = ModelImageRepository(self, "ModelImage", cluster_name=settings.cluster.cluster_name,
                                           images_kept=settings.storage.ecr_images_kept)
        self.bucket = self.models.bucket
        self.repository = self.images.repository
        self.access = ModelAccessRoles(self, "ModelAccess", bucket=self.bucket, model_name=settings.model.model_name,
                                       weights_source=settings.model.weights_source,
                                       with_gateway=settings.endpoint.scales_to_zero)
