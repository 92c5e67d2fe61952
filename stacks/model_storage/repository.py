"""The ECR repository for the model image (compile, stage, serve, benchmark)."""
from aws_cdk import RemovalPolicy, aws_ecr as ecr
from constructs import Construct

from stacks.settings import Settings


class ModelImageRepository(Construct):
    def __init__(self, scope: Construct, id: str, *, settings: Settings) -> None:
        super().__init__(scope, id)
        self.repository = ecr.Repository(
            self,
            "Repository",
            image_scan_on_push=True,
            # A tag is a commit id: it must always name the same bytes.
            image_tag_mutability=ecr.TagMutability.IMMUTABLE,
            encryption=ecr.RepositoryEncryption.AES_256,
            lifecycle_rules=[
                ecr.LifecycleRule(
                    description=f"keep the last {settings.ecr_images_kept} images",
                    max_image_count=settings.ecr_images_kept,
                )
            ],
            removal_policy=RemovalPolicy.RETAIN,
        )
