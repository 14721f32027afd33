import sys

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
def index() -> dict:
    return {"app": "uv-api", "python": f"{sys.version_info.major}.{sys.version_info.minor}"}
