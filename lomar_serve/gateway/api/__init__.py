"""The HTTP layer of the gateway: dependencies, upload parsing, error responses and one router per resource."""
