"""The documents routes: upload, list and remove documents, a thin layer over ``Service``.

``POST /v1/documents`` takes one or more files (multipart form, field ``file``, repeatable) and
answers when they are indexed and served (201), or at once with a job to follow
(``?wait=false``: 202, then ``GET /v1/documents/jobs/{id}``). Refusals are 4xx whose ``details``
name each refused file and why; a refused request changes nothing.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Annotated

import anyio.to_thread
import msgspec
from litestar import Response, delete, get, post
from litestar.datastructures import UploadFile
from litestar.enums import RequestEncodingType
from litestar.handlers import HTTPRouteHandler
from litestar.openapi.datastructures import ResponseSpec
from litestar.params import Body, FromPath, FromQuery

from index_build.uploads import Upload
from rag.retrieval.store import ListedDocument
from rag.serve.auth import ADMIN
from rag.serve.errors import ERROR_RESPONSES
from rag.serve.jobs import JobBody
from rag.serve.service import Removed, ServiceDep
from rag.settings import Settings

# Room for the multipart headers around the files within one upload request.
MULTIPART_OVERHEAD = 256 * 1024
# Form parts litestar parses before refusing a request outright: above any document limit, so
# the refusal that names the files (RAG_MAX_DOCUMENTS) comes first.
MAX_FORM_PARTS = 10_000


ACCEPTED = ResponseSpec(data_container=JobBody, generate_examples=False,
                        description="with ?wait=false: the upload's job, to follow at "
                                    "/v1/documents/jobs/{job}")


@dataclass
class UploadForm:
    file: list[UploadFile]


def document_routes(settings: Settings) -> list[HTTPRouteHandler]:
    """The routes, with the upload size limit of ``settings``."""

    @post("/v1/documents", status_code=201, responses={**ERROR_RESPONSES, 202: ACCEPTED},
          request_max_body_size=settings.max_upload_bytes + MULTIPART_OVERHEAD, opt=ADMIN)
    async def upload_documents(
        data: Annotated[UploadForm, Body(media_type=RequestEncodingType.MULTI_PART)],
        service: ServiceDep, wait: FromQuery[bool] = True,
    ) -> Response[JobBody]:
        """Index the files sent (.txt .md .html .pdf .docx, typed by content) and serve them."""
        service.ready()
        uploads = [Upload(f.filename, await f.read()) for f in data.file]
        job = service.jobs.create([u.name for u in uploads])
        service.uploads.submit(job, functools.partial(service.add_documents, uploads), wait)
        if not wait:
            return Response(job.body(), status_code=202)
        return Response(await job.outcome(), status_code=201)

    return [upload_documents, list_documents, remove_document, upload_job]


class Documents(msgspec.Struct):
    """``GET /v1/documents``: every document of the index this replica serves."""

    documents: list[ListedDocument]
    chunks: int
    fingerprint: str  # changes with every build that changes the index


@get("/v1/documents", sync_to_thread=False, responses=ERROR_RESPONSES)
def list_documents(service: ServiceDep) -> Documents:
    """Every document of the index this replica serves."""
    manifest = service.ready().index.manifest
    return Documents(documents=[d.listing() for d in manifest.documents],
                     chunks=manifest.chunk_count, fingerprint=manifest.fingerprint)


@delete("/v1/documents/{doc_id:path}", status_code=200, responses=ERROR_RESPONSES, opt=ADMIN)
async def remove_document(doc_id: FromPath[str], service: ServiceDep) -> Removed:
    """Remove a document from the index and from the service's storage."""
    return await anyio.to_thread.run_sync(service.remove_document, doc_id.lstrip("/"))


@get("/v1/documents/jobs/{job_id:str}", sync_to_thread=False, responses=ERROR_RESPONSES)
def upload_job(job_id: FromPath[str], service: ServiceDep) -> JobBody:
    """Where an upload is: received, checking, indexing, loading, done or failed."""
    return service.jobs.get(job_id).body()
