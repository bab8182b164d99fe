"""The FastAPI app: REST API, auth, preview pages, QR codes."""
