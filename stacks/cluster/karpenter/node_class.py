"""EC2NodeClass "inf2": how Karpenter launches Neuron nodes (AMI, role, network, disk, IMDS).

Built from the class generated from the pinned CRD. Nothing AWS-specific is
typed here: the role name is the CDK node role's token, the selectors are the
discovery tag the network and cluster stacks put on subnets and the node
security group.
"""
from __future__ import annotations

import cdk8s
from constructs import Construct

from k8s_charts.imports.aws.k8s.karpenter import (
    Ec2NodeClass,
    Ec2NodeClassSpec,
    Ec2NodeClassSpecAmiSelectorTerms,
    Ec2NodeClassSpecBlockDeviceMappings,
    Ec2NodeClassSpecBlockDeviceMappingsEbs,
    Ec2NodeClassSpecBlockDeviceMappingsEbsVolumeType,
    Ec2NodeClassSpecMetadataOptions,
    Ec2NodeClassSpecMetadataOptionsHttpEndpoint,
    Ec2NodeClassSpecMetadataOptionsHttpProtocolIPv6,
    Ec2NodeClassSpecMetadataOptionsHttpTokens,
    Ec2NodeClassSpecSecurityGroupSelectorTerms,
    Ec2NodeClassSpecSubnetSelectorTerms,
)

NAME = "inf2"
# The device that holds container images (the Neuron DLC, several GiB) and the
# staged model: the root volume on AL2023, the data volume on Bottlerocket.
IMAGE_VOLUME_DEVICE = {"al2023": "/dev/xvda", "bottlerocket": "/dev/xvdb"}
# nodeadm's FastImagePull feature gate: SOCI parallel pull and unpack of the image's
# layers, built into the EKS-optimized AL2023 AMIs. "Experimental" for the EKS AMI
# project; nodeadm ignores it on instances below a CPU/memory threshold ("usable on most
# xlarge instance types"): awslabs/amazon-eks-ami nodeadm/internal/api feature gates and
# containerd snapshotter config. Cited effect: a 9.35 GB image from 130.8 s to 39.6 s on
# AL2023 (aws-samples/karpenter-blueprints, SOCI parallel pull blueprint).
FAST_IMAGE_PULL_USER_DATA = """MIME-Version: 1.0
Content-Type: multipart/mixed; boundary="BOUNDARY"

--BOUNDARY
Content-Type: application/node.eks.aws

---
apiVersion: node.eks.aws/v1alpha1
kind: NodeConfig
spec:
  featureGates:
    FastImagePull: true

--BOUNDARY--
"""


class NodeClassChart(cdk8s.Chart):
    def __init__(self, scope: Construct, id: str, *, role_name: str, discovery_tag: tuple[str, str],
                 ami_alias: str, volume_gib: int, fast_image_pull: bool = False,
                 volume_throughput_mibps: int = 125, volume_iops: int = 3000) -> None:
        super().__init__(scope, id)
        tag_key, tag_value = discovery_tag
        family = ami_alias.split("@", 1)[0]
        self.node_class = Ec2NodeClass(
            self,
            "NodeClass",
            metadata=cdk8s.ApiObjectMetadata(name=NAME),
            spec=Ec2NodeClassSpec(
                # An alias such as al2023@v20260903 resolves to the accelerated (Neuron)
                # variant for inf2 instances. `@latest` follows new AMIs on the next
                # drift check; in production pin a version (al2023@v20250101) and
                # roll it forward deliberately.
                ami_selector_terms=[Ec2NodeClassSpecAmiSelectorTerms(alias=ami_alias)],
                # Karpenter creates the instance profile for this role (it may pass it).
                role=role_name,
                subnet_selector_terms=[Ec2NodeClassSpecSubnetSelectorTerms(tags={tag_key: tag_value})],
                security_group_selector_terms=[
                    Ec2NodeClassSpecSecurityGroupSelectorTerms(tags={tag_key: tag_value})
                ],
                # IMDSv2 only, and a hop limit of 1 so that pods cannot reach the node
                # role's credentials (they get their own through Pod Identity).
                metadata_options=Ec2NodeClassSpecMetadataOptions(
                    http_endpoint=Ec2NodeClassSpecMetadataOptionsHttpEndpoint.ENABLED,
                    http_protocol_i_pv6=Ec2NodeClassSpecMetadataOptionsHttpProtocolIPv6.DISABLED,
                    http_tokens=Ec2NodeClassSpecMetadataOptionsHttpTokens.REQUIRED,
                    http_put_response_hop_limit=1,
                ),
                block_device_mappings=[Ec2NodeClassSpecBlockDeviceMappings(
                    device_name=IMAGE_VOLUME_DEVICE[family],
                    ebs=Ec2NodeClassSpecBlockDeviceMappingsEbs(
                        volume_size=f"{volume_gib}Gi",
                        volume_type=Ec2NodeClassSpecBlockDeviceMappingsEbsVolumeType.GP3,
                        # gp3 above its 125 MiB/s and 3000 IOPS baseline: the multi-GiB image is
                        # written (unpacked) and the model staged to this volume at every cold start.
                        throughput=volume_throughput_mibps,
                        iops=volume_iops,
                        encrypted=True,
                        delete_on_termination=True,
                    ),
                )],
                # AL2023 only (nodeadm); Bottlerocket configures its snapshotter otherwise.
                user_data=FAST_IMAGE_PULL_USER_DATA if fast_image_pull and family == "al2023" else None,
            ),
        )
