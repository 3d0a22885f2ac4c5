"""The claims team's CDK code: its features on the platform's gateway, deployed from its own account."""
