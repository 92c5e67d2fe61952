"""The release pipeline's parts: commands, artifact storage, notifications, image build, deploy stage."""
