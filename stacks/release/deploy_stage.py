"""The deploy stage: exactly the application stacks a sandbox `cdk deploy` creates."""
import aws_cdk as cdk
from constructs import Construct

from stacks.application import build_application
from stacks.settings import Settings


class DeployStage(cdk.Stage):
    def __init__(self, scope: Construct, id: str, *, settings: Settings, **kwargs) -> None:
        super().__init__(scope, id, **kwargs)
        self.settings = settings
        self.application = build_application(self, settings)
