"""FastAPI/Starlette adapter."""
