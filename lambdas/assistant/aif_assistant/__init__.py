"""The governed assistant's backend for the browser (``GovernedAssistant``; docs/assistant.md).

The single-page app in ``web/`` talks only to this backend (``/api/*``); the backend knows the signed-in
user from the identity the edge verified (API Gateway's Cognito authorizer in AWS, the sign-in stub of
``ai-factory serve --assistant`` locally), maps the user's groups to a clearance, and calls the factory's
gateway with the assistant feature's key, which never reaches the browser.
"""
