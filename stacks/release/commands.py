"""The shell commands of the release pipeline's CodeBuild steps, in one place.

TEST_COMMAND is the README's test command and the one line `.ci/run` runs; the
synth step runs exactly it, and tests/release asserts that the two agree.

The image tag is the commit id, read from one CodeBuild variable in both the
synth step (which passes it to the app as `-c imageTag=...`, so the deploy stage
references `<repository>:<commit>`) and the image build step (which pushes
`<repository>:<commit>` and the gateway's `<repository>:<commit>-gateway`). Both
steps take the source checkout as their primary input, where CodeBuild sets this
variable to the commit id of the pipeline run.
"""
from stacks.storage.repository import GATEWAY_TAG_SUFFIX

TEST_COMMAND = "make test"

# CodeBuild sets it to the commit id of the primary source (the CodeConnections checkout).
COMMIT_VARIABLE = "CODEBUILD_RESOLVED_SOURCE_VERSION"

# The synth step runs on Debian bookworm (Python 3.11, as the Makefile expects; its tests
# install Debian's bubblewrap and chromium when root) with Node 22: Node 20 left support
# on 2026-04-30 (jsii prints it; 22 is supported to 2027-04-30).
SYNTH_IMAGE = "public.ecr.aws/docker/library/node:22-bookworm"

# PyPI's torch wheel for Linux is the multi-GB CUDA build; the synth step only needs the
# CPU build, from PyTorch's own index ("pip3 install torch --index-url
# https://download.pytorch.org/whl/cpu", pytorch.org Get Started). The Makefile passes this.
TORCH_PIP_ARGS = "--index-url https://download.pytorch.org/whl/cpu"

# `make setup` is the pinned install (venv from requirements-dev.txt, then npm ci);
# cdk.json's app command is `.venv/bin/python app.py`, so synth uses that venv.
INSTALL_COMMANDS = (
    "apt-get update -qq && apt-get install -y -qq python3 python3-venv make",
    f'make setup TORCH_PIP_ARGS="{TORCH_PIP_ARGS}"',
)

SYNTH_COMMAND = f"npx --no-install cdk synth --no-notices --no-version-reporting -c imageTag=${COMMIT_VARIABLE}"

SYNTH_COMMANDS = (
    # A release is always a commit: fail early instead of tagging an image "".
    f'test -n "${COMMIT_VARIABLE}"',
    TEST_COMMAND,
    SYNTH_COMMAND,
)

# Build context of the images; each image is (Dockerfile, tag suffix) in the one repository.
IMAGE_CONTEXT = "model_image"
IMAGES = (("Dockerfile", ""), ("Dockerfile.gateway", GATEWAY_TAG_SUFFIX))

IMAGE_TAG_EXPRESSION = f"${COMMIT_VARIABLE}"
IMAGE = f"$REPOSITORY_URI:{IMAGE_TAG_EXPRESSION}"


def _build_and_push(dockerfile: str, suffix: str) -> str:
    tag = IMAGE_TAG_EXPRESSION + suffix
    image = IMAGE + suffix
    # Tags are immutable: a rerun for the same commit (a retried stage) keeps
    # the image already pushed instead of failing on the existing tag.
    return (
        f'if aws ecr describe-images --repository-name "$REPOSITORY_NAME" --image-ids imageTag="{tag}" >/dev/null 2>&1; then'
        f' echo "{image} exists; tags are immutable, keeping it";'
        ' else'
        f' docker build --pull --tag "{image}" --file {IMAGE_CONTEXT}/{dockerfile} {IMAGE_CONTEXT}'
        f' && docker push "{image}";'
        ' fi'
    )


# The first release of a model version also tags its model image COMPILE_TAG
# (`compile-<version>`, stacks/storage/repository.py), inside ECR: the documented
# retag is batch-get-image of the manifest, then put-image of it under the new tag (ECR
# user guide, "Retagging an image in Amazon ECR", image-retag.html, for Docker Image
# Manifest V2 Schema 2 images, what `docker build` pushes). Later releases of the version find the tag and keep
# it, so the compile Job's manifest does not change (stacks/workload/serving/compile_job.py).
TAG_COMPILE_IMAGE = (
    'if aws ecr describe-images --repository-name "$REPOSITORY_NAME" --image-ids imageTag="$COMPILE_TAG" >/dev/null 2>&1; then'
    ' echo "$COMPILE_TAG exists: this model version compiles with the image that first carried it";'
    ' else'
    f' aws ecr batch-get-image --repository-name "$REPOSITORY_NAME" --image-ids imageTag="{IMAGE_TAG_EXPRESSION}"'
    ' --query "images[0].imageManifest" --output text > /tmp/image-manifest.json'
    ' && aws ecr put-image --repository-name "$REPOSITORY_NAME" --image-tag "$COMPILE_TAG"'
    ' --image-manifest file:///tmp/image-manifest.json >/dev/null;'
    ' fi'
)

# REPOSITORY_NAME, REPOSITORY_URI, REGISTRY and COMPILE_TAG come from the step's environment.
IMAGE_BUILD_COMMANDS = (
    f'test -n "${COMMIT_VARIABLE}"',
    'aws ecr get-login-password | docker login --username AWS --password-stdin "$REGISTRY"',
    *(_build_and_push(dockerfile, suffix) for dockerfile, suffix in IMAGES),
    TAG_COMPILE_IMAGE,
)
