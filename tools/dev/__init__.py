"""Dev tools for a laptop: a tiny random SD pipeline, a loopback S3 to compile and stage it into,
the demo server and the CPU benchmark. Not in any image: the Dockerfile copies sd21/ only."""
