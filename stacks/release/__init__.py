"""The release pipeline's parts: commands, artifact storage, notifications, image build, reviews;
stack.py wires them around the deploy stage."""
