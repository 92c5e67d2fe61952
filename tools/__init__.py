"""Command-line tools over cdk.out, the settings and the account (rendering, cost, settings
reference, dashboard text, compile tag, preflight), and dev tools that are not shipped in an image."""
